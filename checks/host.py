"""Host check (psutil): the server itself — disks, memory, swap, load, named processes,
systemd units — and the agent's own footprint.

Config keys:
  disks          paths whose filesystems are watched (default ["/"])
  disk_free_min  free space below this fails: "10%" of the filesystem or a size such as
                 "5GiB" (default "10%"). Free is what `df` calls available.
  memory_max     memory in use (total minus available) above this fails (default "90%";
                 "100%" turns the test off, the observation stays)
  swap_max       swap in use above this fails (default: none, only observed)
  load_max       5-minute load average per CPU core above this fails (default: none)
  processes      names that must be running, as `pgrep -x` matches them (default [])
  units          systemd units that must be active (default []), via `systemctl is-active`

Contract (see checks/base.py): one sample per run, taken in a worker thread — statvfs on a
hung network mount, or walking every process, must not stall the event loop — then judged
by `assess`, a pure function. Units are asked of `systemctl is-active` as one child
process; its output is read up to 64 KiB and the process is killed on every early exit
(cancellation by the scheduler's deadline included).

Failure classification:
  assertion  a threshold is crossed, a process is not running, a unit is not active, a
             watched path does not exist. Every failing item is in the reason.
  internal   units are configured, but `systemctl` is missing or cannot answer (no
             systemd, no bus): the check cannot be made here — not the host's fault.
(When both happen the kind is assertion: the real problem comes first.)

Observations. Per watched path, keyed "<name>:<path>" — the name is a metric-like word,
the path a label value taken from the config, so the set of keys is bounded:
  disk_free_ratio:/var, disk_free_bytes:/var, and from the second run on
  disk_fill_rate_bytes_per_s:/var (bytes per second taken since the previous run; the
  previous sample is kept per path in `ctx.kind_state["host"]`, runtime memory only;
  negative when space was freed).
Host-wide: memory_used_ratio, swap_used_ratio, load5_per_core, and from the second run
on cpu_percent (the whole machine, since the previous run). The agent's own: own_rss_mb,
and from the second run on own_cpu_percent (100 = one core).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psutil

from agent.fields import Section, show
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

MAX_OUTPUT: Final = 64 * 1024
MAX_SHOWN: Final = 5  # failing items quoted in one reason
_UNIT: Final = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")
_ACTIVE: Final = frozenset({"active", "reloading"})


@dataclass(frozen=True, slots=True)
class DiskMin:
    ratio: float | None = 0.10
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class HostSpec:
    disks: tuple[str, ...] = ("/",)
    disk_free_min: DiskMin = DiskMin()
    memory_max: float | None = 0.90
    swap_max: float | None = None
    load_max: float | None = None
    processes: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    #: Not a config key: the systemctl to run (tests use a stand-in).
    systemctl: str = field(default="systemctl", compare=False)


def parse(sec: Section) -> HostSpec:
    disks = sec.string_list("disks", ("/",))
    for i, path in enumerate(disks):
        if not path.startswith("/"):
            sec.error(f"disks[{i}]", f"must be an absolute path, got {show(path)}")
    disk_min = DiskMin()
    if sec.has("disk_free_min"):
        value: Any = sec.raw["disk_free_min"]
        if isinstance(value, str) and value.strip().endswith("%"):
            disk_min = DiskMin(ratio=sec.percent("disk_free_min", 10.0) / 100)
        else:
            disk_min = DiskMin(ratio=None, bytes=sec.size("disk_free_min", 0))
    memory = sec.percent("memory_max", 90.0) / 100
    swap = sec.percent("swap_max", 0.0) / 100 if sec.has("swap_max") else None
    load = None
    if sec.has("load_max"):
        raw: Any = sec.value("load_max")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
            sec.error("load_max", f"must be a number > 0 (load per core), got {show(raw)}")
        else:
            load = float(raw)
    processes = sec.string_list("processes")
    units = sec.string_list("units")
    for i, unit in enumerate(units):
        if not _UNIT.match(unit) or unit.startswith("-"):
            sec.error(f"units[{i}]", f"not a systemd unit name, got {show(unit)}")
    return HostSpec(disks, disk_min, memory, swap, load, processes, units)


def target(spec: HostSpec) -> str:
    return "this host"


@dataclass(frozen=True, slots=True)
class Disk:
    total: int
    free: int
    used: int


@dataclass(frozen=True, slots=True)
class Sample:
    """What one run saw; `disks` maps a path to its usage, or None when it does not exist."""

    at: float  # monotonic
    disks: dict[str, Disk | None]
    memory_used: float
    swap_used: float
    swap_total: int
    load5_per_core: float
    running: frozenset[str] = frozenset()
    cpu_percent: float | None = None
    own_rss: int = 0
    own_cpu_percent: float | None = None


class _State:
    """What the next run needs from this one; lives in `ctx.kind_state["host"]`."""

    def __init__(self) -> None:
        self.disks: dict[str, tuple[float, int]] = {}  # path -> (monotonic time, used bytes)
        self.me = psutil.Process()
        self.primed = False  # cpu_percent() counts from the previous call


def _state(ctx: ProbeContext) -> _State:
    state = ctx.kind_state.get("host")
    if not isinstance(state, _State):
        state = ctx.kind_state["host"] = _State()
    return state


async def probe(spec: HostSpec, ctx: ProbeContext) -> CheckResult:
    """One sample of the host; see the module docstring for the classification."""
    started = time.perf_counter()
    state = _state(ctx)
    sample = await asyncio.to_thread(take_sample, spec, state)
    problems, observations = assess(spec, sample, state.disks)
    for path, disk in sample.disks.items():
        if disk is not None:
            state.disks[path] = (sample.at, disk.used)
    unit_problems, unit_error = await _units(spec) if spec.units else ([], None)
    problems += unit_problems
    latency = time.perf_counter() - started
    if problems or unit_error:
        kind = ErrorKind.ASSERTION if problems else ErrorKind.INTERNAL
        return CheckResult.failure(kind, _join(problems + ([unit_error] if unit_error else [])),
                                   latency, observations)
    return CheckResult.success(latency, summary(spec, sample), observations)


def take_sample(spec: HostSpec, state: _State) -> Sample:
    """Blocking: runs in a worker thread."""
    disks: dict[str, Disk | None] = {}
    for path in spec.disks:
        try:
            usage = psutil.disk_usage(path)
            disks[path] = Disk(usage.total, usage.free, usage.used)
        except OSError:
            disks[path] = None
    mem, swap = psutil.virtual_memory(), psutil.swap_memory()
    running: frozenset[str] = frozenset()
    if spec.processes:
        wanted = set(spec.processes)
        running = frozenset(p.info["name"] for p in psutil.process_iter(["name"])
                            if p.info["name"] in wanted)
    cpu, own_cpu = psutil.cpu_percent(None), state.me.cpu_percent(None)
    primed, state.primed = state.primed, True
    return Sample(
        at=time.monotonic(), disks=disks,
        memory_used=(mem.total - mem.available) / mem.total if mem.total else 0.0,
        swap_used=swap.used / swap.total if swap.total else 0.0, swap_total=swap.total,
        load5_per_core=os.getloadavg()[1] / (psutil.cpu_count() or 1), running=running,
        cpu_percent=cpu if primed else None, own_rss=state.me.memory_info().rss,
        own_cpu_percent=own_cpu if primed else None,
    )


def assess(spec: HostSpec, sample: Sample, previous: dict[str, tuple[float, int]]
           ) -> tuple[list[str], dict[str, float]]:
    """(what is wrong, observations) for one sample; `previous` maps a path to the
    (monotonic time, used bytes) of the last run. Pure."""
    problems: list[str] = []
    obs: dict[str, float] = {}
    for path, disk in sample.disks.items():
        if disk is None:
            problems.append(f"disk {path}: no such path")
            continue
        ratio = disk.free / disk.total if disk.total else 0.0
        obs[f"disk_free_ratio:{path}"] = ratio
        obs[f"disk_free_bytes:{path}"] = float(disk.free)
        if path in previous and sample.at > previous[path][0]:
            then, used = previous[path]
            obs[f"disk_fill_rate_bytes_per_s:{path}"] = (disk.used - used) / (sample.at - then)
        low = spec.disk_free_min
        if low.ratio is not None and ratio < low.ratio:
            problems.append(f"disk {path}: {ratio:.1%} free ({_size(disk.free)}), "
                            f"below {low.ratio:.0%}")
        elif low.bytes is not None and disk.free < low.bytes:
            problems.append(f"disk {path}: {_size(disk.free)} free, below {_size(low.bytes)}")
    obs |= {"memory_used_ratio": sample.memory_used, "swap_used_ratio": sample.swap_used,
            "load5_per_core": sample.load5_per_core, "own_rss_mb": sample.own_rss / 2**20}
    if sample.cpu_percent is not None:
        obs["cpu_percent"] = sample.cpu_percent
    if sample.own_cpu_percent is not None:
        obs["own_cpu_percent"] = sample.own_cpu_percent
    if spec.memory_max is not None and sample.memory_used > spec.memory_max:
        problems.append(f"memory {sample.memory_used:.0%} used, above {spec.memory_max:.0%}")
    if spec.swap_max is not None and sample.swap_total and sample.swap_used > spec.swap_max:
        problems.append(f"swap {sample.swap_used:.0%} used, above {spec.swap_max:.0%}")
    if spec.load_max is not None and sample.load5_per_core > spec.load_max:
        problems.append(f"load {sample.load5_per_core:.2f} per core, above {spec.load_max:g}")
    missing = [p for p in spec.processes if p not in sample.running]
    if missing:
        problems.append(f"not running: {', '.join(missing)}")
    return problems, obs


def summary(spec: HostSpec, sample: Sample) -> str:
    parts = [f"disk {p} {d.free / d.total:.0%} free" for p, d in sample.disks.items()
             if d is not None and d.total]
    parts += [f"memory {sample.memory_used:.0%} used",
              f"load {sample.load5_per_core:.2f} per core"]
    if spec.processes:
        parts.append(f"{len(spec.processes)} process{'es' if len(spec.processes) > 1 else ''}"
                     f" running")
    if spec.units:
        parts.append(f"{len(spec.units)} unit{'s' if len(spec.units) > 1 else ''} active")
    return _join(parts)


async def _units(spec: HostSpec) -> tuple[list[str], str | None]:
    """(units not active, why systemctl could not tell) from one `systemctl is-active`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            spec.systemctl, "is-active", "--", *spec.units, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)  # its own process group: killed with all it started
    except OSError as exc:
        why = "not installed here" if isinstance(exc, FileNotFoundError) else exc.strerror
        return [], f"units: cannot run {spec.systemctl} ({why})"
    stdout = proc.stdout
    assert stdout is not None  # asked for with PIPE
    try:
        out, eof = bytearray(), False
        while not eof and len(out) < MAX_OUTPUT:  # one `is-active` answer fits many times over
            chunk = await stdout.read(MAX_OUTPUT - len(out))
            out += chunk
            eof = not chunk
        if eof:
            await proc.wait()
    finally:
        if proc.returncode is None:  # talks too much, or the deadline came
            # The whole group, so that no child keeps the pipe open; and the pipe drained to
            # its end, because asyncio (3.11) lets wait() return only after EOF on it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for _ in range(64):  # bounded: its writers are dead, what is left is buffered
                if not await stdout.read(MAX_OUTPUT):
                    break
            await proc.wait()
    states = out.decode("utf-8", "replace").split()
    if len(states) != len(spec.units) or not all(s.isalpha() for s in states):
        said = out.decode("utf-8", "replace").strip().splitlines()
        first = said[0][:120] if said else f"no answer, exit status {proc.returncode}"
        return [], f"units: {spec.systemctl} is-active could not tell: {first}"
    down = [f"{u} {s}" for u, s in zip(spec.units, states, strict=True) if s not in _ACTIVE]
    return ([f"unit not active: {', '.join(down)}"] if down else []), None


def _join(items: Sequence[str]) -> str:
    """At most MAX_SHOWN items, each at most 200 characters: a reason stays readable."""
    shown = "; ".join(i if len(i) <= 200 else i[:197] + "..." for i in items[:MAX_SHOWN])
    return shown + (f" (+{len(items) - MAX_SHOWN} more)" if len(items) > MAX_SHOWN else "")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} TiB"
