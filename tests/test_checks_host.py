"""The host kind: real samples of this machine, the verdict on synthetic samples, and units
asked of stand-in `systemctl` scripts (a real child process each, no mocks).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.fields import Section
from checks import host
from checks.base import ProbeContext, run_with_deadline
from checks.host import Disk, DiskMin, HostSpec, Sample, assess
from checks.result import CheckResult, ErrorKind

GiB = 2**30
#: Thresholds no machine crosses: the real-sample tests must not depend on this one's load.
LENIENT = HostSpec(disk_free_min=DiskMin(ratio=0.0), memory_max=None)


async def check(spec: HostSpec, ctx: ProbeContext, timeout: float = 10.0) -> CheckResult:
    return await run_with_deadline(host.probe, spec, ctx, timeout)


def systemctl(tmp_path: Path, body: str) -> str:
    """A stand-in systemctl: a shell script called as `systemctl is-active -- UNIT...`."""
    path = tmp_path / "systemctl"
    path.write_text("#!/bin/sh\nshift 2\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


UNITS = 'for u in "$@"; do case $u in bad*) echo failed;; *) echo active;; esac; done'


# --- real samples -------------------------------------------------------------------------


async def test_samples_this_host(ctx: ProbeContext, tmp_path: Path) -> None:
    me = psutil.Process().name()
    spec = HostSpec(("/", str(tmp_path)), DiskMin(ratio=0.0), None, processes=(me,))
    first = await check(spec, ctx)
    assert first.ok, first.reason
    assert first.reason.startswith("disk / ")
    assert first.reason.endswith("; 1 process running")
    obs = first.observations
    assert 0 < obs["disk_free_ratio:/"] <= 1 and obs["disk_free_bytes:/"] > 0
    assert f"disk_free_ratio:{tmp_path}" in obs
    assert 0 < obs["memory_used_ratio"] <= 1 and 0 <= obs["swap_used_ratio"] <= 1
    assert obs["load5_per_core"] >= 0 and obs["own_rss_mb"] > 1
    # Rates need a previous sample: not on the first run ...
    assert "disk_fill_rate_bytes_per_s:/" not in obs and "own_cpu_percent" not in obs
    second = await check(spec, ctx)
    # ... and on every run after it.
    assert {"disk_fill_rate_bytes_per_s:/", "cpu_percent", "own_cpu_percent"} <= set(
        second.observations)


async def test_missing_path_and_process(ctx: ProbeContext) -> None:
    spec = HostSpec(("/", "/no/such/mount"), DiskMin(ratio=0.0), None,
                    processes=("no-such-process-0042", psutil.Process().name()))
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "disk /no/such/mount: no such path; not running: no-such-process-0042"


async def test_disk_threshold_on_this_host(ctx: ProbeContext) -> None:
    result = await check(HostSpec(disk_free_min=DiskMin(ratio=None, bytes=2**62),
                                  memory_max=None), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason.startswith("disk /: ")
    assert result.reason.endswith(" free, below 4194304.0 TiB")
    assert "disk_free_ratio:/" in result.observations  # observed although it failed


# --- units --------------------------------------------------------------------------------


async def test_units_active(ctx: ProbeContext, tmp_path: Path) -> None:
    spec = HostSpec(disk_free_min=DiskMin(ratio=0.0), memory_max=None,
                    units=("postfix.service", "nginx"), systemctl=systemctl(tmp_path, UNITS))
    result = await check(spec, ctx)
    assert result.ok, result.reason
    assert result.reason.endswith("; 2 units active")


async def test_unit_not_active(ctx: ProbeContext, tmp_path: Path) -> None:
    spec = HostSpec(disk_free_min=DiskMin(ratio=0.0), memory_max=None,
                    units=("postfix.service", "bad-backup.timer", "bad.mount"),
                    systemctl=systemctl(tmp_path, UNITS))
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "unit not active: bad-backup.timer failed, bad.mount failed"


async def test_no_systemctl(ctx: ProbeContext, tmp_path: Path) -> None:
    missing = str(tmp_path / "systemctl")
    spec = HostSpec(disk_free_min=DiskMin(ratio=0.0), memory_max=None, units=("cron.service",),
                    systemctl=missing)
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.INTERNAL
    assert result.reason == f"units: cannot run {missing} (not installed here)"
    # A real problem found at the same time comes first, and decides the kind.
    spec = HostSpec(("/no/such/mount",), memory_max=None, units=("cron.service",),
                    systemctl=missing)
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == (f"disk /no/such/mount: no such path; units: cannot run {missing} "
                             "(not installed here)")


async def test_systemctl_without_systemd(ctx: ProbeContext, tmp_path: Path) -> None:
    body = ('echo "System has not been booted with systemd as init system (PID 1). '
            'Can\'t operate." >&2\necho "Failed to connect to bus: Host is down" >&2\nexit 1')
    spec = HostSpec(disk_free_min=DiskMin(ratio=0.0), memory_max=None, units=("cron.service",),
                    systemctl=systemctl(tmp_path, body))
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.INTERNAL
    assert result.reason == ("units: " + spec.systemctl + " is-active could not tell: System "
                             "has not been booted with systemd as init system (PID 1). "
                             "Can't operate.")


async def test_endless_systemctl_output_is_bounded(ctx: ProbeContext, tmp_path: Path) -> None:
    spec = HostSpec(disk_free_min=DiskMin(ratio=0.0), memory_max=None, units=("cron.service",),
                    systemctl=systemctl(tmp_path, "yes active"))
    started = time.monotonic()
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.INTERNAL
    assert result.reason.startswith(f"units: {spec.systemctl} is-active could not tell: active")
    assert time.monotonic() - started < 5
    assert not psutil.Process().children()  # killed and reaped


async def test_hanging_systemctl_is_a_timeout_and_killed(ctx: ProbeContext,
                                                         tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    spec = HostSpec(disk_free_min=DiskMin(ratio=0.0), memory_max=None, units=("cron.service",),
                    systemctl=systemctl(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60"))
    result = await check(spec, ctx, timeout=0.5)
    assert result.error_kind is ErrorKind.TIMEOUT
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not psutil.Process().children()


# --- the verdict --------------------------------------------------------------------------


def sample(at: float = 100.0, disks: dict[str, Disk | None] | None = None,
           **kw: Any) -> Sample:
    base: dict[str, Any] = {"memory_used": 0.5, "swap_used": 0.1, "swap_total": GiB,
                            "load5_per_core": 0.3, "running": frozenset({"nginx"}),
                            "own_rss": 50 * 2**20}
    return Sample(at, {"/": Disk(100 * GiB, 40 * GiB, 60 * GiB)} if disks is None else disks,
                  **(base | kw))


@pytest.mark.parametrize(
    ("spec", "got", "problems"),
    [
        (HostSpec(), sample(), []),
        (HostSpec(), sample(disks={"/": Disk(100 * GiB, 5 * GiB, 95 * GiB)}),
         ["disk /: 5.0% free (5.0 GiB), below 10%"]),
        (HostSpec(disk_free_min=DiskMin(None, 50 * GiB)), sample(),
         ["disk /: 40.0 GiB free, below 50.0 GiB"]),
        (HostSpec(memory_max=0.9), sample(memory_used=0.93), ["memory 93% used, above 90%"]),
        (HostSpec(memory_max=None), sample(memory_used=0.99), []),
        (HostSpec(swap_max=0.5), sample(swap_used=0.75), ["swap 75% used, above 50%"]),
        (HostSpec(swap_max=0.5), sample(swap_used=0.0, swap_total=0), []),  # no swap at all
        (HostSpec(load_max=2), sample(load5_per_core=2.5), ["load 2.50 per core, above 2"]),
        (HostSpec(processes=("nginx", "postgres", "cron")), sample(),
         ["not running: postgres, cron"]),
        (HostSpec(("/", "/srv"), memory_max=0.4, load_max=0.1),
         sample(disks={"/": Disk(100 * GiB, 40 * GiB, 60 * GiB), "/srv": None}),
         ["disk /srv: no such path", "memory 50% used, above 40%",
          "load 0.30 per core, above 0.1"]),
    ],
)
def test_assess(spec: HostSpec, got: Sample, problems: list[str]) -> None:
    assert assess(spec, got, {})[0] == problems


def test_observations_and_fill_rate() -> None:
    spec = HostSpec(("/", "/var"))
    now = sample(at=160.0, disks={"/": Disk(100 * GiB, 40 * GiB, 60 * GiB),
                                  "/var": Disk(10 * GiB, 1 * GiB, 9 * GiB)},
                 cpu_percent=12.5, own_cpu_percent=0.7)
    previous = {"/": (100.0, 60 * GiB - 6000), "/var": (100.0, 9 * GiB + 600)}
    problems, obs = assess(spec, now, previous)
    assert problems == []
    assert obs == {
        "disk_free_ratio:/": 0.4, "disk_free_bytes:/": 40 * GiB,
        "disk_fill_rate_bytes_per_s:/": 100.0,  # 6000 bytes more in 60 s
        "disk_free_ratio:/var": 0.1, "disk_free_bytes:/var": GiB,
        "disk_fill_rate_bytes_per_s:/var": -10.0,  # space was freed
        "memory_used_ratio": 0.5, "swap_used_ratio": 0.1, "load5_per_core": 0.3,
        "own_rss_mb": 50.0, "cpu_percent": 12.5, "own_cpu_percent": 0.7,
    }


def test_summary_and_bounded_reason() -> None:
    spec = HostSpec(processes=("nginx",), units=("a.service", "b.service"))
    assert host.summary(spec, sample()) == (
        "disk / 40% free; memory 50% used; load 0.30 per core; 1 process running; "
        "2 units active")
    many = HostSpec(processes=tuple(f"process-{i}" for i in range(30)))
    problems, _ = assess(many, sample(), {})
    assert len(host._join(problems * 7)) < 5 * 202 + 20
    assert host._join(problems * 7).endswith("... (+2 more)")


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any]) -> tuple[HostSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[1]", errors, Path("."))
    spec = host.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_every_key() -> None:
    spec, errors = parse({"disks": ["/", "/var"], "disk_free_min": "15%", "memory_max": "80%",
                          "swap_max": 50, "load_max": 1.5, "processes": ["nginx"],
                          "units": ["postfix.service", "backup@daily.timer"]})
    assert errors == []
    assert spec == HostSpec(("/", "/var"), DiskMin(0.15), 0.8, 0.5, 1.5, ("nginx",),
                            ("postfix.service", "backup@daily.timer"))
    assert parse({}) == (HostSpec(), [])
    assert parse({"disk_free_min": "5GiB"})[0].disk_free_min == DiskMin(None, 5 * GiB)
    assert parse({"disk_free_min": 1000})[0].disk_free_min == DiskMin(None, 1000)
    assert host.target(spec) == "this host"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"disks": ["var"]}, 'checks[1]: disks[0]: must be an absolute path, got "var"'),
        ({"disks": "/"}, None),
        ({"disk_free_min": "120%"},
         'checks[1]: disk_free_min: must be a percentage from 0 to 100, like 20 or "20%", '
         'got "120%"'),
        ({"disk_free_min": "lots"}, "checks[1]: disk_free_min: must be a size like"),
        ({"memory_max": 0.9}, None),  # 0.9 percent: allowed, if odd
        ({"memory_max": "ninety"}, "checks[1]: memory_max: must be a percentage"),
        ({"load_max": 0}, "checks[1]: load_max: must be a number > 0 (load per core), got 0"),
        ({"load_max": "2"}, 'checks[1]: load_max: must be a number > 0 (load per core), got "2"'),
        ({"processes": [1]}, "checks[1]: processes: must be a list of strings"),
        ({"units": ["--now"]}, 'checks[1]: units[0]: not a systemd unit name, got "--now"'),
        ({"units": ["a b"]}, 'checks[1]: units[0]: not a systemd unit name, got "a b"'),
        ({"disk": ["/"]}, 'checks[1]: unknown key "disk" (did you mean "disks"?)'),
    ],
)
def test_parse_errors(raw: dict[str, Any], error: str | None) -> None:
    _, errors = parse(raw)
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith(error), errors


def test_runs_as_a_real_user_process() -> None:
    # The sample reads the agent's own process: make sure it is this one.
    assert host._State().me.pid == os.getpid()
