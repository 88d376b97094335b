"""Throughput benchmark of the real agent process running http checks on loopback.

Run (from the repository root; ~2 min per mode with the defaults):

    python3 benchmarks/throughput.py --mode all [--baseline]
    python3 benchmarks/throughput.py --mode paced --duration 60 --checks 500
    python3 benchmarks/throughput.py --mode saturated --py-spy /tmp/agent.txt

What happens per mode: a target server (benchmarks/target_server.py, a separate
process on 127.0.0.1) and `python3 -m agent run --config <generated toml>` are
started; the agent listens on 127.0.0.1:0 (its port is read from the
"agent_started" log line), runs N `type = "http"` checks against
http://127.0.0.1:PORT/c/<i> with no contacts, and is measured over a window
that starts after a warm-up (start-up is never measured). Both processes are
stopped at the end; every wait is bounded.

Modes and the targets they are judged against:
    paced      500 checks every 20 s (25 checks/s), 20 s warm-up: <= 1.3 CPU-ms/check
    saturated  3000 checks every 1 s, more than the agent can run, so it runs
               as many as it can: <= 0.35 CPU-ms/check
    lateness   1000 checks every 10 s, every 10th target (/hang/<i>) never answers
               and times out after 5 s (those checks open incidents, which is
               expected): lateness p99 <= 50 ms, peak RSS <= 100 MB

Figures printed:
    checks/s         completed runs in the window (sum of the deltas of every
                     onwatch_check_runs_total series, any result) / window seconds
    CPU-ms/check     user+system CPU of the whole agent process (all threads; psutil
                     cpu_times delta over the window) / checks completed. The two
                     /metrics scrapes that bound the window are outside it.
    lateness p50/p99 how late probes started after their due time: the delta of the
                     onwatch_scheduler_lateness_seconds histogram over the window,
                     quantiles INTERPOLATED FROM BUCKETS the way Prometheus's
                     histogram_quantile() does (so only as exact as the buckets)
    peak RSS         VmHWM of the agent from /proc/<pid>/status (whole life)
    target CPU       CPU of the target server over the window, in % of one core,
                     to show that the target was not the bottleneck

--baseline also runs benchmarks/bare_client.py (the same GETs on the same
schedule through one shared force_close ClientSession, nothing else) for
paced and saturated and prints its CPU-ms per GET next to the agent's.
--agent-dir DIR runs the agent from another source tree (e.g. `git archive HEAD`
unpacked in /tmp) to compare versions.
--py-spy FILE attaches py-spy (if installed) to the agent during the window
and writes a raw (collapsed) profile; sampling perturbs the CPU figures.
Exit status: 0 when every target passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
LATENESS = "onwatch_scheduler_lateness_seconds"
RUNS = "onwatch_check_runs_total"


@dataclass(frozen=True)
class Mode:
    name: str
    checks: int
    interval: float
    timeout: float
    warmup: float
    duration: float
    concurrency: int = 200
    hang_every: int = 0  # every n-th target hangs (0: none)
    confirm: int = 20  # high: a blip must not open incidents and churn the store
    recheck: float | None = None  # None: = interval, so a failure does not change the pace
    max_cpu_ms: float | None = None
    max_p99_ms: float | None = None
    max_rss_mb: float | None = None


MODES = {
    "paced": Mode("paced", 500, 20.0, 5.0, 20.0, 60.0, max_cpu_ms=1.3),
    "saturated": Mode("saturated", 3000, 1.0, 0.9, 15.0, 60.0, max_cpu_ms=0.35),
    "lateness": Mode("lateness", 1000, 10.0, 5.0, 35.0, 60.0, hang_every=10, confirm=3,
                     recheck=5.0, max_p99_ms=50.0, max_rss_mb=100.0),
}


# ------------------------------------------------------------------ processes

def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def write_config(mode: Mode, port: int, tmp: Path) -> Path:
    lines = [
        "[agent]",
        f'state_dir = "{tmp / "state"}"',
        'listen = "127.0.0.1:0"',
        f"max_concurrency = {mode.concurrency}",
        'log_level = "info"',
        "",
        "[defaults]",
        f'interval = "{_ms(mode.interval)}"',
        f'timeout = "{_ms(mode.timeout)}"',
        f"confirm = {mode.confirm}",
        "recover = 1",
        f'recheck_interval = "{_ms(mode.recheck or mode.interval)}"',
        'severity = "low"',
    ]
    for i in range(mode.checks):
        path = "hang" if mode.hang_every and i % mode.hang_every == 0 else "c"
        lines += ["", "[[checks]]", f'name = "c{i}"', 'type = "http"',
                  f'url = "http://127.0.0.1:{port}/{path}/{i}"']
    cfg = tmp / "onwatch.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def start_target(workers: int, impl: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "target_server.py"), "--workers", str(workers),
         "--impl", impl, "--max-seconds", "1800"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its port once it listens
    if not line:
        raise SystemExit(f"target server did not start (exit {proc.wait(10)})")
    return proc, int(json.loads(line)["port"])


def stop_proc(proc: subprocess.Popen[Any], *, group: bool = False, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait(timeout)


def start_agent(cfg: Path, tmp: Path, agent_dir: Path, timeout: float = 60.0
                ) -> tuple[subprocess.Popen[bytes], str]:
    log = (tmp / "agent.log").open("wb")
    # `-m agent` from agent_dir imports that tree's agent/ and checks/ (sys.path[0] is the cwd).
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                            cwd=str(agent_dir), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in (tmp / "agent.log").read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("event") == "agent_started":
                return proc, str(ev["listen"])
        if proc.poll() is not None:
            raise SystemExit(f"agent exited {proc.returncode}:\n"
                             + (tmp / "agent.log").read_text(errors="replace")[-3000:])
        time.sleep(0.1)
    stop_proc(proc)
    raise SystemExit(f"agent did not log agent_started within {timeout:g}s")


def tree_cpu(proc: psutil.Process) -> float:
    """user+system seconds of a process and its children (the target's workers)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# -------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(address: str) -> tuple[dict[float, float], dict[str, float]]:
    """(lateness bucket counts by upper bound, run counts by result summed over checks)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=60) as resp:
        text = resp.read().decode()
    buckets: dict[float, float] = {}
    runs: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith((LATENESS + "_bucket", RUNS)):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, value = m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))
        if name == LATENESS + "_bucket":
            buckets[float(labels["le"])] = value  # "+Inf" parses as inf
        elif name == RUNS:
            runs[labels["result"]] = runs.get(labels["result"], 0.0) + value
    return buckets, runs


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile over cumulative buckets {upper bound: count}.

    Linear interpolation inside the bucket holding the rank; the lowest bucket's
    lower bound is 0; a rank in the +Inf bucket returns the highest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return math.nan
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for i, b in enumerate(bounds):
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return bounds[-2] if len(bounds) > 1 else math.nan
            if i == 0 and b <= 0:
                return b
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return bounds[-2]


# ---------------------------------------------------------------- measuring

def _verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return ""
    return f"target <= {limit:g}  {'PASS' if value <= limit else 'FAIL'}"


def run_mode(mode: Mode, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    tmp = Path(tempfile.mkdtemp(prefix=f"onwatch-bench-{mode.name}-"))
    target, port = start_target(args.target_workers, args.target_impl)
    agent: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        cfg = write_config(mode, port, tmp)
        agent, address = start_agent(cfg, tmp, args.agent_dir)
        ap, tp = psutil.Process(agent.pid), psutil.Process(target.pid)
        print(f"\n== {mode.name}: {mode.checks} http checks every {mode.interval:g}s "
              f"(demand {mode.checks / mode.interval:.0f}/s), timeout {mode.timeout:g}s"
              + (f", every {mode.hang_every}th target hangs" if mode.hang_every else "")
              + f"; agent pid {agent.pid} on {address}, target :{port}", flush=True)
        print(f"   warm-up {mode.warmup:g}s, then a {mode.duration:g}s window ...", flush=True)
        time.sleep(mode.warmup)
        if agent.poll() is not None:
            raise SystemExit(f"agent died during warm-up (exit {agent.returncode})")

        b0, r0 = scrape(address)  # scrape first, then CPU: the scrape's cost stays outside
        a0, tc0, w0 = ap.cpu_times(), tree_cpu(tp), time.monotonic()
        if args.py_spy:
            exe = shutil.which("py-spy")
            if exe is None:
                print("   (py-spy not installed: no profile)")
            else:
                spy = subprocess.Popen([exe, "record", "--format", "raw", "-o", args.py_spy,
                                        "-d", str(int(mode.duration)), "-r", "100",
                                        "-p", str(agent.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(mode.duration)
        a1, tc1, w1 = ap.cpu_times(), tree_cpu(tp), time.monotonic()
        b1, r1 = scrape(address)
        hwm = vm_hwm_kib(agent.pid)
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                stop_proc(spy)
    finally:
        if agent is not None:
            stop_proc(agent)
        stop_proc(target, group=True)
        shutil.rmtree(tmp, ignore_errors=True)

    wall = w1 - w0
    by_result = {k: r1.get(k, 0.0) - r0.get(k, 0.0) for k in r1}
    checks = sum(by_result.values())
    cpu_s = (a1.user + a1.system) - (a0.user + a0.system)
    cpu_ms = cpu_s * 1000 / checks if checks else math.inf
    late = {b: b1.get(b, 0.0) - b0.get(b, 0.0) for b in b1}
    p50, p99 = histogram_quantile(0.5, late), histogram_quantile(0.99, late)
    rss_mb = hwm * 1024 / 1e6
    results = ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_result.items()) if v)
    ok = True

    def line(label: str, text: str, verdict: str = "") -> None:
        nonlocal ok
        ok = ok and "FAIL" not in verdict
        print(f"   {label:<18} {text:<58} {verdict}".rstrip())

    line("checks/s", f"{checks / wall:.1f}  ({checks:.0f} runs in {wall:.1f}s: {results})")
    sys_s = a1.system - a0.system
    line("CPU-ms/check", f"{cpu_ms:.3f}  (agent {cpu_s:.2f}s CPU = {100 * cpu_s / wall:.0f}% "
         f"of one core, {100 * sys_s / cpu_s if cpu_s else 0:.0f}% system)",
         _verdict(cpu_ms, mode.max_cpu_ms))
    line("lateness p50", f"{p50 * 1000:.2f} ms  (interpolated from histogram buckets)")
    line("lateness p99", f"{p99 * 1000:.2f} ms  (interpolated from histogram buckets)",
         _verdict(p99 * 1000, mode.max_p99_ms))
    line("peak RSS (VmHWM)", f"{rss_mb:.1f} MB", _verdict(rss_mb, mode.max_rss_mb))
    line("target CPU", f"{100 * (tc1 - tc0) / wall:.1f}% of one core "
         f"({args.target_workers} {args.target_impl} worker(s))")
    if spy is not None:
        print(f"   py-spy profile: {args.py_spy} (CPU figures perturbed by sampling)")
    return {"mode": mode.name, "checks_per_s": checks / wall, "cpu_ms_per_check": cpu_ms,
            "lateness_p50_s": p50, "lateness_p99_s": p99, "peak_rss_mb": rss_mb}, ok


def run_baseline(mode: Mode, args: argparse.Namespace, agent_cpu_ms: float | None) -> None:
    target, port = start_target(args.target_workers, args.target_impl)
    try:
        tp = psutil.Process(target.pid)
        print("   baseline (bare aiohttp client, same GETs and schedule) ...", flush=True)
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "bare_client.py"), "--port", str(port),
             "--checks", str(mode.checks), "--interval", str(mode.interval),
             "--timeout", str(mode.timeout), "--concurrency", str(mode.concurrency),
             "--warmup", str(mode.warmup), "--duration", str(mode.duration)],
            stdout=subprocess.PIPE, text=True)
        time.sleep(mode.warmup)
        tc0 = tree_cpu(tp)
        try:
            out, _ = proc.communicate(timeout=mode.duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise SystemExit("baseline client did not finish in time") from None
        tc1 = tree_cpu(tp)
    finally:
        stop_proc(target, group=True)
    res = json.loads(out.strip().splitlines()[-1])
    gets, cpu_s, wall = res["gets"], res["cpu_s"], res["wall_s"]
    cpu_ms = cpu_s * 1000 / gets if gets else math.inf
    ratio = f"; agent/bare = {agent_cpu_ms / cpu_ms:.2f}x" if agent_cpu_ms else ""
    print(f"   {'bare GETs/s':<18} {gets / wall:.1f}  ({gets} GETs in {wall:.1f}s, "
          f"{res['failed_total']} failed in all)")
    sys_pct = 100 * res["sys_s"] / cpu_s if cpu_s else 0.0
    print(f"   {'bare CPU-ms/GET':<18} {cpu_ms:.3f}  ({cpu_s:.2f}s CPU = "
          f"{100 * cpu_s / wall:.0f}% of one core, {sys_pct:.0f}% system{ratio})")
    print(f"   {'bare peak RSS':<18} {res['vm_hwm_kib'] * 1024 / 1e6:.1f} MB;  target CPU "
          f"{100 * (tc1 - tc0) / wall:.1f}% of one core (approx. window)")


def main() -> int:
    ap = argparse.ArgumentParser(description="Throughput benchmark of the onwatch agent "
                                 "(see the module docstring).")
    ap.add_argument("--mode", choices=(*MODES, "all"), default="all")
    ap.add_argument("--duration", type=float, help="measured window, seconds (default 60)")
    ap.add_argument("--warmup", type=float, help="override the mode's warm-up, seconds")
    ap.add_argument("--checks", type=int, help="override the mode's number of checks")
    ap.add_argument("--interval", type=float, help="override the mode's check interval, seconds")
    ap.add_argument("--concurrency", type=int, help="agent max_concurrency (default 200)")
    ap.add_argument("--baseline", action="store_true",
                    help="also measure a bare aiohttp client (paced and saturated)")
    ap.add_argument("--target-workers", type=int, default=1)
    ap.add_argument("--target-impl", choices=("raw", "aiohttp"), default="raw")
    ap.add_argument("--agent-dir", type=Path, default=ROOT,
                    help="run the agent from this source tree (default: this repository), e.g. "
                    "a `git archive` snapshot to compare two versions")
    ap.add_argument("--py-spy", metavar="FILE", help="record a py-spy raw profile of the agent "
                    "during the window (one mode only)")
    args = ap.parse_args()
    names = list(MODES) if args.mode == "all" else [args.mode]
    if args.py_spy and len(names) > 1:
        ap.error("--py-spy profiles one mode: pick one with --mode")

    args.agent_dir = args.agent_dir.resolve()
    print(f"onwatch throughput benchmark: {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, agent from {args.agent_dir}, loopback only")
    all_ok = True
    for name in names:
        mode = MODES[name]
        overrides = {k: v for k, v in (("duration", args.duration), ("warmup", args.warmup),
                                       ("checks", args.checks), ("interval", args.interval),
                                       ("concurrency", args.concurrency)) if v is not None}
        if "interval" in overrides:
            overrides["timeout"] = min(mode.timeout, 0.9 * overrides["interval"])
        mode = replace(mode, **overrides)
        summary, ok = run_mode(mode, args)
        all_ok = all_ok and ok
        if args.baseline and name in ("paced", "saturated"):
            run_baseline(mode, args, summary["cpu_ms_per_check"])
    print("\nall targets PASS" if all_ok else "\nsome targets FAIL")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
