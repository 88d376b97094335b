"""Detection figures with the real daemon against local targets (loopback only).

    python3 benchmarks/detection.py [--outages 12] [--blip-checks 40] [--blip-minutes 4]
                                    [--false-page-checks 20] [--nab ../shared/nab/data]

1. Time to page for a hard outage: http checks (interval 5 s, timeout 1 s,
   confirm 4 as by default, recheck_interval 1 s: the defaults' shape, scaled
   down so the run takes minutes) against a local target that is stopped at random moments.
   For each outage it prints the time from the stop to the page arriving at a
   local json:// receiver, and that time minus the wait for the next scheduled
   check; the target is "at most (time until its next scheduled check) + 10 s".
2. Blips: checks against a target that fails 1 request in 50 at random, each
   run counted; the figure is the number of pages (target: 0) over the
   simulated days (runs / 8640, a day at one run every 10 s).
3. False pages over time (benchmarks/false_pages.py, pure and quick, run
   first): NAB's no-anomaly series and simulated noisy but healthy checks
   through the decision path; degraded incidents per check per day and week
   (target: <= 1 per check per week). `--false-page-checks 0` skips it,
   `--outages 0` the daemon runs.

Everything stops by itself; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import false_pages  # noqa: E402
from tests.support import Receiver, start_agent, wait_for  # noqa: E402

INTERVAL, TIMEOUT, RECHECK, CONFIRM = 5.0, 1.0, 1.0, 4


class Target:
    def __init__(self, fail_ratio: float = 0.0) -> None:
        self.fail_ratio = fail_ratio
        self.runs = 0
        self.times: list[float] = []
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._get)
        self.runner = web.AppRunner(app, access_log=None)
        self.site: web.TCPSite | None = None
        self.port = 0

    async def _get(self, request: web.Request) -> web.Response:
        self.runs += 1
        self.times.append(time.monotonic())
        if self.fail_ratio and random.random() < self.fail_ratio:
            return web.Response(status=500, text="blip")
        return web.Response(text="ok")

    async def start(self) -> None:
        if self.runner.server is None:
            await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.site is not None
        await self.site.stop()


def config(state: Path, receiver: Receiver, checks: list[tuple[str, int, float]]) -> str:
    text = f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
log_level = "info"
"""
    # One contact per check: this measures detection, not storm bundling (a person
    # paged for 5 different outages within a minute gets them bundled, by design).
    for name, port, interval in checks:
        text += f"""
[[contacts]]
name = "pager-{name}"
urls = ["{receiver.url}/{name}"]

[[checks]]
name = "{name}"
type = "http"
url = "http://127.0.0.1:{port}/{name}"
interval = "{interval}s"
timeout = "{min(TIMEOUT, interval / 2)}s"
recheck_interval = "{min(RECHECK, interval / 2)}s"
confirm = {CONFIRM}
contacts = ["pager-{name}"]
"""
    return text


async def time_to_page(outages: int) -> list[tuple[float, float]]:
    """Each outage breaks a different check (its own target), so that a run of
    outages is not one check flapping, which onwatch would rightly page once."""
    targets, receiver = [Target() for _ in range(outages)], await Receiver().start()
    for t in targets:
        await t.start()
    out: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        checks = [(f"shop-{i}", t.port, INTERVAL) for i, t in enumerate(targets)]
        agent = await start_agent(config(Path(tmp) / "st", receiver, checks), Path(tmp))
        try:
            await asyncio.sleep(2 * INTERVAL)  # every check has run and is up
            for n, target in enumerate(targets):
                await asyncio.sleep(random.uniform(0, INTERVAL))
                last_run = target.times[-1]
                stopped = time.monotonic()
                await target.stop()
                await wait_for(lambda: _paged(receiver), 60, "the page")
                paged = time.monotonic()
                # The next scheduled run after the stop came `interval` after the last one.
                next_run = max(stopped, last_run + INTERVAL)
                out.append((paged - stopped, paged - next_run))
                print(f"  outage {n + 1}: paged after {paged - stopped:.2f}s "
                      f"({paged - next_run:.2f}s after the next scheduled check)")
                await target.start()
                await wait_for(lambda: _resolved(receiver), 60, "the resolution")
                receiver.messages.clear()
        finally:
            await agent.stop()
            await receiver.close()
            for t in targets:
                await t.runner.cleanup()
    return out


async def _paged(receiver: Receiver) -> bool:
    return any("[DOWN]" in t for t in receiver.titles())


async def _resolved(receiver: Receiver) -> bool:
    return any("[RESOLVED]" in t for t in receiver.titles())


async def blips(checks: int, minutes: float) -> tuple[int, int]:
    target, receiver = Target(fail_ratio=1 / 50), await Receiver().start()
    await target.start()
    with tempfile.TemporaryDirectory() as tmp:
        names = [(f"blip-{i}", target.port, 0.5) for i in range(checks)]
        agent = await start_agent(config(Path(tmp) / "st", receiver, names), Path(tmp))
        try:
            await asyncio.sleep(minutes * 60)
        finally:
            await agent.stop()
            await receiver.close()
            await target.runner.cleanup()
    return target.runs, sum("[DOWN]" in t for t in receiver.titles())


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outages", type=int, default=12)
    ap.add_argument("--blip-checks", type=int, default=40)
    ap.add_argument("--blip-minutes", type=float, default=4.0, help="0 to skip the blip run")
    ap.add_argument("--false-page-checks", type=int, default=20,
                    help="simulated healthy checks, a week each (0: skip)")
    default_nab = ROOT.parent / "shared" / "nab" / "data"
    ap.add_argument("--nab", type=Path, default=default_nab if default_nab.is_dir() else None,
                    help="NAB data folder: its no-anomaly series join the false-page run")
    args = ap.parse_args()
    if args.false_page_checks > 0:
        false_pages.main([f"--checks={args.false_page_checks}"]
                         + ([f"--nab={args.nab}"] if args.nab else []))
    if args.outages <= 0:
        return
    print(f"== time to page: interval {INTERVAL:g}s, timeout {TIMEOUT:g}s, confirm {CONFIRM}, "
          f"recheck {RECHECK:g}s, {args.outages} outages at random moments")
    got = await time_to_page(args.outages)
    total = sorted(t for t, _ in got)
    extra = sorted(e for _, e in got)
    print(f"   stop -> page        p50 {statistics.median(total):.2f}s  max {total[-1]:.2f}s")
    print(f"   next check -> page  p50 {statistics.median(extra):.2f}s  max {extra[-1]:.2f}s"
          f"   target <= 10s  {'PASS' if extra[-1] <= 10 else 'FAIL'}")
    if args.blip_minutes <= 0:
        return
    print(f"== blips: {args.blip_checks} checks every 0.5s for {args.blip_minutes:g} min, "
          "1 request in 50 fails at random")
    runs, pages = await blips(args.blip_checks, args.blip_minutes)
    print(f"   runs {runs} (= {runs / 8640:.1f} simulated days at one run per 10 s)  "
          f"pages {pages}   target 0  {'PASS' if pages == 0 else 'FAIL'}")


if __name__ == "__main__":
    asyncio.run(main())
