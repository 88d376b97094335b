"""Remote probes at scale: one central, P probes x C checks each, on loopback.

Run (from the repository root; about 3 minutes with the defaults):

    python3 benchmarks/probes.py [--probes 20] [--checks 100] [--interval 30]
                                 [--warmup 40] [--window 60]

What happens: a target server (benchmarks/target_server.py) answers every
check; the central (`onwatch run`) has P x C http checks, each at one probe's
location, plus one check ("canary") that runs at probe 0 against a target this
script switches off; P `onwatch probe` processes fetch their checks and send
results. After the warm-up, over the window, it reads each process's CPU time
(/proc, utime+stime) and the central's result counters, then breaks the
canary's target and times the page at a local receiver. Last, one plain agent
runs C local checks on the same schedule for the per-check CPU comparison.

Printed:
- central: CPU-ms per received result, RSS;
- end to end: from the canary's first failed run at the probe (the incident's
  start) to the page, against the probe's confirm time + 5 s (the target);
- a probe's CPU-ms per check run, against a single agent's CPU-ms per check
  run on the same schedule.

Every process is stopped at the end; every wait is bounded. The figures are
from whatever machine runs this: on a loaded 2-core machine they move.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

ROOT = Path(__file__).resolve().parent.parent
CONFIRM, RECHECK, TIMEOUT = 3, 1.0, 2.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def central_toml(tmp: Path, probes: int, checks: int, interval: float, target: int,
                 canary: int, receiver: int, public: int) -> Path:
    lines = [f'[agent]\nstate_dir = "{tmp / "central"}"\nlisten = "127.0.0.1:0"\n',
             f'[web]\npublic_listen = "127.0.0.1:{public}"\n',
             f'[[contacts]]\nname = "owner"\nurls = ["json://127.0.0.1:{receiver}/owner"]\n',
             '[[policies]]\nname = "owner"\nack_timeout = "off"\n[[policies.steps]]\n'
             'notify = ["owner"]\n',
             f'[defaults]\npolicy = "owner"\ninterval = "{interval:g}s"\ntimeout = '
             f'"{TIMEOUT:g}s"\nconfirm = {CONFIRM}\nrecheck_interval = "{RECHECK:g}s"\n',
             '[probes]\nunreachable_after = "10m"\n']
    for p in range(probes):
        for c in range(checks):
            lines.append(f'[[checks]]\nname = "p{p}-c{c}"\ntype = "http"\nbaseline = false\n'
                         f'url = "http://127.0.0.1:{target}/c/{p}/{c}"\nlocations = ["p{p}"]\n')
    lines.append(f'[[checks]]\nname = "canary"\ntype = "http"\nbaseline = false\n'
                 f'url = "http://127.0.0.1:{canary}/"\nlocations = ["p0"]\n')
    path = tmp / "central.toml"
    path.write_text("\n".join(lines))
    return path


def local_toml(tmp: Path, checks: int, interval: float, target: int) -> Path:
    lines = [f'[agent]\nstate_dir = "{tmp / "single"}"\nlisten = "127.0.0.1:0"\n',
             f'[defaults]\ninterval = "{interval:g}s"\ntimeout = "{TIMEOUT:g}s"\n']
    for c in range(checks):
        lines.append(f'[[checks]]\nname = "c{c}"\ntype = "http"\nbaseline = false\n'
                     f'url = "http://127.0.0.1:{target}/c/{c}"\n')
    path = tmp / "single.toml"
    path.write_text("\n".join(lines))
    return path


async def spawn(*args: str, ready: str, timeout: float = 120.0) -> tuple[Any, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args, cwd=str(ROOT), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), deadline - time.monotonic())
        if not line:
            raise RuntimeError(f"{args} exited before {ready}")
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == ready:
            asyncio.get_running_loop().create_task(_drain(proc.stderr))
            return proc, ev
    raise RuntimeError(f"{args}: no {ready} within {timeout}s")


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def stop(proc: Any) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def metric_sum(base: str, prefix: str) -> float:
    async with ClientSession() as s, s.get(base + "/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


def add_probes(cfg: Path, tmp: Path, n: int, public: int) -> list[Path]:
    """`onwatch probe add` for each probe (the central need not run), and its probe.toml."""
    files = []
    for p in range(n):
        out = subprocess.run([sys.executable, "-m", "agent", "probe", "add", f"p{p}",
                              "--config", str(cfg)], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        key = re.search(r'key = "([^"]+)"', out.stdout)
        assert key, out.stderr
        pf = tmp / f"p{p}.toml"
        pf.write_text(f'[probe]\nname = "p{p}"\ncentral = "http://127.0.0.1:{public}"\n'
                      f'key = "{key.group(1)}"\nstate_dir = "{tmp / f"p{p}"}"\n'
                      'report_every = "1s"\n')
        files.append(pf)
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probes", type=int, default=20, help="remote probes (default 20)")
    ap.add_argument("--checks", type=int, default=100, help="checks per probe (default 100)")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds (default 30)")
    ap.add_argument("--warmup", type=float, default=40.0, help="seconds (default 40)")
    ap.add_argument("--window", type=float, default=60.0, help="seconds (default 60)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onwatch-probes-"))
    target = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "target_server.py"),
                               "--max-seconds", "1200"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None
        target_port = json.loads(target.stdout.readline())["port"]
        ports = (free_port(), free_port())  # the canary/receiver, the central's public
        cfg = central_toml(tmp, args.probes, args.checks, args.interval, target_port,
                           ports[0], ports[0], ports[1])
        files = add_probes(cfg, tmp, args.probes, ports[1])
        asyncio.run(run(args, tmp, cfg, files, target_port, ports[0]))
    finally:
        target.terminate()
        target.wait(10)


async def run(args: argparse.Namespace, tmp: Path, cfg: Path, files: list[Path],
              target_port: int, port: int) -> None:
    canary_up = {"up": True}
    pages: list[float] = []
    paged = asyncio.Event()

    async def canary(_: web.Request) -> web.Response:
        return web.Response(text="ok", status=200 if canary_up["up"] else 503)

    async def receive(_: web.Request) -> web.Response:
        pages.append(time.time())
        paged.set()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/", canary)
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    procs: list[Any] = []
    try:
        t0 = time.monotonic()
        central, started = await spawn("run", "--config", str(cfg), ready="agent_started")
        procs.append(central)
        print(f"central up with {args.probes * args.checks + 1} checks in "
              f"{time.monotonic() - t0:.1f}s")
        base = f"http://{started['listen']}"
        probes = []
        for pf in files:
            proc, _ = await spawn("probe", "--config", str(pf), ready="probe_started")
            procs.append(proc)
            probes.append(proc)
        await asyncio.sleep(args.warmup)
        c0, results0 = cpu_s(central.pid), await metric_sum(
            base, "onwatch_probe_results_total")
        pc0 = [cpu_s(p.pid) for p in probes]
        await asyncio.sleep(args.window)
        c1, results1 = cpu_s(central.pid), await metric_sum(
            base, "onwatch_probe_results_total")
        pc1 = [cpu_s(p.pid) for p in probes]
        received = results1 - results0
        runs_per_probe = args.checks * args.window / args.interval
        probe_ms = sum(b - a for a, b in zip(pc0, pc1, strict=True)) / len(probes) \
            / runs_per_probe * 1000
        print(f"central: {received:.0f} results in {args.window:g}s, "
              f"{(c1 - c0) * 1000 / max(received, 1):.3f} CPU-ms per result, "
              f"RSS {rss_mb(central.pid):.0f} MB")
        # End to end: the canary breaks at the probe; the page arrives here.
        canary_up["up"] = False
        broke = time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(paged.wait(), args.interval + 60)
        state = tmp / "central" / "onwatch.db"
        with sqlite3.connect(state) as db:
            row = db.execute("SELECT started_at FROM incidents WHERE check_name = 'canary'"
                             ).fetchone()
        confirm_time = (CONFIRM - 1) * (RECHECK + TIMEOUT)
        if pages and row:
            e2e = pages[0] - float(row[0])
            print(f"end to end: first failed run -> page {e2e:.2f}s (target < probe confirm "
                  f"time {confirm_time:g}s + 5s = {confirm_time + 5:g}s); "
                  f"break -> page {pages[0] - broke:.1f}s (includes waiting for the next run)")
        else:
            print("end to end: no page within the interval + 60 s")
        for p in procs:
            await stop(p)
        procs.clear()
        # A single agent with one probe's share of checks, locally, same schedule.
        single, _ = await spawn("run", "--config", str(local_toml(tmp, args.checks,
                                                                 args.interval, target_port)),
                                ready="agent_started")
        procs.append(single)
        await asyncio.sleep(args.warmup)
        s0 = cpu_s(single.pid)
        await asyncio.sleep(args.window)
        single_ms = (cpu_s(single.pid) - s0) / runs_per_probe * 1000
        print(f"probe: {probe_ms:.3f} CPU-ms per check run; a single agent: {single_ms:.3f} "
              f"CPU-ms per check run ({probe_ms / max(single_ms, 1e-9):.2f}x)")
    finally:
        for p in procs:
            await stop(p)
        await runner.cleanup()


if __name__ == "__main__":
    main()
