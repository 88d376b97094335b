"""Where an agent's memory per check goes: tracemalloc over a real agent, in-process.

Run (from the repository root; about a minute for 5,000 checks):

    python3 benchmarks/memory.py [--checks 5000] [--rate 25] [--top 15]

What happens: the target server of benchmarks/target_server.py starts (its own
process, 127.0.0.1); this process writes the config of benchmarks/growth.py
for N http checks (interval N / rate), starts tracemalloc (one frame), loads
the config and runs the daemon (`agent.daemon.serve`, on uvloop as
`onwatch run` does) until every check has run once plus 10 s, then takes a
snapshot and stops the daemon. Printed: the traced memory per check (all of
what the config, the scheduler, detection, metrics and the store's
connection hold, over the snapshot before the config was read), and its
biggest parts by source file, per check. Target (issue 19): <= 12 KB/check.
tracemalloc sees Python allocations only: RSS (benchmarks/growth.py) also
holds the interpreter, the libraries and the allocator's slack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from growth import config_for  # noqa: E402  (a sibling script, not a package)
from throughput import start_target, stop_proc  # noqa: E402


async def run(n: int, cfg_path: Path, top: int) -> None:
    from agent import config, daemon, logs

    logs.configure("warning")
    before = tracemalloc.take_snapshot()
    cfg = config.load(cfg_path)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.serve(cfg, stop=stop))
    spread = max(5.0, n / 200) + 15.0
    await asyncio.sleep(spread)
    if task.done():
        task.result()  # the daemon failed to start: say why
    after = tracemalloc.take_snapshot()
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)
    stats = after.compare_to(before, "filename")
    total = sum(s.size_diff for s in stats)
    print(f"\n{n} http checks: traced memory {total / 1e6:.1f} MB more than before the "
          f"config was read = {total / n / 1e3:.2f} KB per check (target <= 12)")
    print(f"{'KB/check':>9}  {'blocks/check':>12}  file")
    root = str(HERE.parent) + "/"
    for s in stats[:top]:
        name = s.traceback[0].filename.replace(root, "")
        name = name.split("site-packages/")[-1]
        print(f"{s.size_diff / n / 1e3:9.2f}  {s.count_diff / n:12.1f}  {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checks", type=int, default=5000, help="number of http checks")
    ap.add_argument("--rate", type=float, default=25.0, help="total checks per second")
    ap.add_argument("--top", type=int, default=15, help="source files to list")
    args = ap.parse_args()
    args.duration = 60.0
    target, port = start_target(1, "raw")
    try:
        with tempfile.TemporaryDirectory(prefix="onwatch-memory-") as d:
            cfg = config_for(args.checks, args, port, Path(d), listeners=False)
            tracemalloc.start(1)
            t0 = time.monotonic()
            try:
                import uvloop
            except ImportError:  # asyncio's own loop measures the same structures
                asyncio.run(run(args.checks, cfg, args.top))
            else:
                uvloop.run(run(args.checks, cfg, args.top))
            print(f"(took {time.monotonic() - t0:.0f}s)")
    finally:
        stop_proc(target, group=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
