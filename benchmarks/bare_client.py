"""The "bare aiohttp" baseline: the agent's GETs with none of the agent around them.

    python3 benchmarks/bare_client.py --port P --checks N --interval S --timeout S \
        --concurrency C --warmup S --duration S

Runs N GET loops against http://127.0.0.1:P/c/<i>, each on the agent's schedule
(phase = crc32 of the name "c<i>", first run spread over min(interval, 5 s), then
the next slot after each run ends), through ONE shared ClientSession whose
connector has force_close=True and no limit, as agent/checks do: the same
semaphore cap, `asyncio.timeout()` around each request, body read, uvloop when
installed. No metrics, no detection, no store, no logging.

After --warmup seconds it snapshots its own CPU time (user+system, all threads)
and GET count, again after --duration seconds, prints one JSON line with the
deltas and exits. Bounded: every loop stops at the end of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import zlib

import aiohttp


def _cpu() -> tuple[float, float]:
    t = os.times()
    return t.user + t.system, t.system


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def _main(args: argparse.Namespace) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    done = {"ok": 0, "fail": 0}
    sem = asyncio.Semaphore(args.concurrency)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0, ttl_dns_cache=60,
                                       enable_cleanup_closed=False),
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": "onwatch-baseline"},
    )
    start = loop.time()
    end = start + args.warmup + args.duration

    async def one(i: int) -> None:
        name = f"c{i}"
        url = f"http://127.0.0.1:{args.port}/c/{i}"
        offset = (zlib.crc32(name.encode()) / 2**32) * args.interval
        due = start + (offset / args.interval) * min(args.interval, 5.0)
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() >= end:
                return
            async with sem:
                try:
                    async with asyncio.timeout(args.timeout):
                        async with session.get(url) as resp:
                            await resp.content.read(1 << 20)
                            ok = 200 <= resp.status <= 299
                except (aiohttp.ClientError, OSError, TimeoutError):
                    ok = False
            done["ok" if ok else "fail"] += 1
            now = loop.time()
            due = args.interval * (math.floor((now - offset) / args.interval) + 1) + offset

    tasks = [asyncio.create_task(one(i)) for i in range(args.checks)]
    await asyncio.sleep(args.warmup)
    c0, n0, t0 = _cpu(), done["ok"] + done["fail"], time.monotonic()
    await asyncio.sleep(args.duration)
    c1, n1, t1 = _cpu(), done["ok"] + done["fail"], time.monotonic()
    # Tasks stop at `end`; those sleeping past it are cancelled (bounded stop).
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    return {"cpu_s": c1[0] - c0[0], "sys_s": c1[1] - c0[1], "gets": n1 - n0, "wall_s": t1 - t0,
            "failed_total": done["fail"], "vm_hwm_kib": _vm_hwm_kib()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--checks", type=int, required=True)
    ap.add_argument("--interval", type=float, required=True)
    ap.add_argument("--timeout", type=float, required=True)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=60.0)
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        out = asyncio.run(_main(args))
    else:
        out = uvloop.run(_main(args))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
