"""The status page under load while the agent keeps watching: requests/s, latency, lateness.

Run (from the repository root; about 1.5 minutes):

    python3 benchmarks/status_page.py [--checks 500] [--components 20] [--rate 500]
                                      [--warmup 15] [--duration 30] [--burst 15]

What happens: the HTTP target of benchmarks/target_server.py (its own process) and
`python3 -m agent run` are started on 127.0.0.1. The agent runs `--checks` http checks
every 10 s (50 checks/s) mapped onto `--components` components (25 checks each), one
check per component points at a closed port, so every component shows a partial outage
with its notice; the store is seeded beforehand with 90 days of uptime rollup rows for
every check (what a long-running agent has: 500 x 90 rows). The public listener serves
the page.

Then, from this process (aiohttp on uvloop, keep-alive connections):
    paced   `--rate` requests/s for `--duration` s, open loop (a request is sent on
            schedule whether or not earlier ones have answered), 80 % the page, 10 %
            /status.json, 10 % a badge: achieved requests/s, latency p50/p99/max;
            the agent's check lateness p50/p99 over the same window, from the delta
            of its onwatch_scheduler_lateness_seconds histogram on the private listener.
    burst   as many requests as 32 connections get answered in `--burst` s (the page
            only): the most the page serves.

Targets (issue 13, a 2-core machine): 500 page requests/s, check lateness p99 <= 50 ms
while they are served. Everything stays on loopback; both processes are stopped at the
end, every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from throughput import (  # noqa: E402  (a sibling script, not a package)
    histogram_quantile,
    scrape,
    start_agent,
    start_target,
    stop_proc,
)

from agent.status.view import dates  # noqa: E402
from agent.store.sqlite import SqliteStore  # noqa: E402
from agent.store.status import StatusStore  # noqa: E402


def write_config(tmp: Path, port: int, checks: int, components: int) -> Path:
    per = checks // components
    lines = [f'[agent]\nstate_dir = "{tmp / "state"}"\nlisten = "127.0.0.1:0"\n'
             'max_concurrency = 200\nlog_level = "info"\ntimezone = "UTC"\n',
             '[web]\npublic_listen = "127.0.0.1:0"\n',
             '[status]\ntitle = "Benchmark Shop"\n']
    for c in range(components):
        names = ", ".join(f'"c{i}"' for i in range(c * per, (c + 1) * per))
        lines.append(f'[[status.components]]\nname = "Service {c}"\ngroup = "Group {c % 4}"\n'
                     f"checks = [{names}]\n")
    for i in range(per * components):
        broken = i % per == 0
        url = "http://127.0.0.1:9/" if broken else f"http://127.0.0.1:{port}/c/{i}"
        lines.append(f'[[checks]]\nname = "c{i}"\ntype = "http"\nurl = "{url}"\n'
                     'interval = "10s"\ntimeout = "5s"\nconfirm = 1\nbaseline = false\n')
    cfg = tmp / "bench.toml"
    cfg.write_text("\n".join(lines))
    return cfg


def seed(state: Path, checks: int) -> None:
    """90 days of rollup rows per check, a few days with problems."""
    store = SqliteStore.open(state)
    status = StatusStore(store)
    days = dates(90, ZoneInfo("UTC"), time.time())
    rows = [(f"c{i}", d, 86400.0 - (600.0 if (i + k) % 17 == 0 else 0.0),
             600.0 if (i + k) % 17 == 0 else 0.0, 0.0)
            for i in range(checks) for k, d in enumerate(days[:-1])]
    with store.tx():
        status.add_uptime(rows)
    store.close()


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def paced(base: str, rate: float, duration: float) -> tuple[int, int, list[float], float]:
    """Open loop at `rate`/s; returns (answered 200, errors, latencies s, seconds taken)."""
    paths = ["/"] * 8 + ["/status.json", "/badge/service-3.svg"]
    latencies: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one(path: str) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                async with s.get(base + path, timeout=aiohttp.ClientTimeout(total=10)) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                return
            latencies.append(time.perf_counter() - t0)

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        total = int(rate * duration)
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(one(paths[n % len(paths)]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        took = time.perf_counter() - start
    return len(latencies), errors, latencies, took


async def burst(base: str, seconds: float, connections: int = 32) -> float:
    done = 0
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with s.get(base + "/") as r:
                    await r.read()
                    done += r.status == 200

        await asyncio.gather(*(worker() for _ in range(connections)))
    return done / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checks", type=int, default=500)
    ap.add_argument("--components", type=int, default=20)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--burst", type=float, default=15.0)
    args = ap.parse_args()
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    with tempfile.TemporaryDirectory(prefix="onwatch-status-bench-") as d:
        tmp = Path(d)
        target, port = start_target(1, "raw")
        try:
            seed(tmp / "state", args.checks)
            agent, private = start_agent(write_config(tmp, port, args.checks, args.components),
                                         tmp, ROOT)
            try:
                return run(measure(args, private, tmp))
            finally:
                stop_proc(agent)
        finally:
            stop_proc(target, group=True)


async def measure(args: argparse.Namespace, private: str, tmp: Path) -> int:
    base = "http://" + (tmp / "state" / "public.addr").read_text().strip()
    await asyncio.sleep(args.warmup)  # start-up and the first round of checks: not measured
    async with aiohttp.ClientSession() as s, s.get(base + "/") as r:
        page = await r.read()
    before = scrape(private)[0]
    ok, errors, lat, took = await paced(base, args.rate, args.duration)
    after = scrape(private)[0]
    delta = {b: after[b] - before.get(b, 0.0) for b in after}
    lat.sort()
    late50, late99 = histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)
    rps = ok / took
    top = await burst(base, args.burst)
    print(f"status page benchmark: {args.checks} checks every 10 s in {args.components} "
          f"components, page {len(page) / 1024:.1f} KiB")
    print(f"  paced {args.rate:g} req/s for {args.duration:g} s: {rps:.0f} req/s answered, "
          f"{errors} errors")
    print(f"  latency p50 {quantile(lat, 0.5) * 1000:.2f} ms  p99 "
          f"{quantile(lat, 0.99) * 1000:.2f} ms  max {lat[-1] * 1000 if lat else math.nan:.2f} ms")
    print(f"  check lateness while served: p50 {late50 * 1000:.2f} ms  p99 "
          f"{late99 * 1000:.2f} ms  ({delta.get(math.inf, 0):.0f} runs)")
    print("  lateness histogram over the window (le: runs): " + ", ".join(
        f"{b:g}: {delta[b]:.0f}" for b in sorted(delta)))
    print(f"  burst, 32 connections: {top:.0f} page req/s")
    passed = rps >= 0.98 * args.rate and errors == 0 and late99 <= 0.050
    print(f"  target: {args.rate:g} req/s with lateness p99 <= 50 ms: "
          f"{'PASS' if passed else 'FAIL'}")
    print(json.dumps({"rps": round(rps, 1), "errors": errors,
                      "latency_p99_ms": round(quantile(lat, 0.99) * 1000, 2),
                      "lateness_p99_ms": round(late99 * 1000, 2), "burst_rps": round(top),
                      "page_kib": round(len(page) / 1024, 1)}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
