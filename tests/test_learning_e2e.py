"""A real `onwatch run` learns, stops on SIGTERM, starts again: its baselines go on learning.

What the first agent learned is in the store after its drain; the second one
logs `baseline_state_restored` with exactly that many samples, and counts on
from there instead of warming up again.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from tests.support import query, start_agent, wait_for


class Target:
    """A local site that counts the requests it answered (each one is a successful run)."""

    def __init__(self) -> None:
        self.hits = 0
        app = web.Application()
        app.router.add_get("/", self._index)
        self.runner = web.AppRunner(app, access_log=None)
        self.port = 0

    async def _index(self, _: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="ok")

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        await self.runner.cleanup()


def _config(state: Path, port: int, interval: str = "200ms") -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"

[[contacts]]
name = "owner"
urls = ["json://127.0.0.1:9/owner"]

[[checks]]
name = "shop"
type = "http"
url = "http://127.0.0.1:{port}/"
interval = "{interval}"
timeout = "150ms"
contacts = ["owner"]
"""


def _stored_samples(state: Path) -> int:
    rows = query(state, "SELECT state FROM baseline_state WHERE check_name = 'shop'")
    assert len(rows) == 1, rows
    return int(json.loads(rows[0][0])["baselines"]["response time"]["baseline"]["state"]["n"])


async def test_baselines_survive_a_restart(tmp_path: Path) -> None:
    target = Target()
    await target.start()
    state = tmp_path / "state"
    first = await start_agent(_config(state, target.port), tmp_path)
    try:
        await wait_for(lambda: target.hits >= 8, 15, "8 successful runs")
    finally:
        assert await first.stop() == 0
    learned = _stored_samples(state)  # written by the drain
    assert learned >= 8

    second = await start_agent(_config(state, target.port), tmp_path)
    try:
        ev = await second.event("baseline_state_restored")
        assert ev["check"] == "shop" and ev["samples"]["response time"] == learned
        assert not second.events("baseline_state_discarded")
        seen = target.hits
        await wait_for(lambda: target.hits >= seen + 3, 15, "3 more runs")
    finally:
        assert await second.stop() == 0
    assert _stored_samples(state) >= learned + 3  # counted on, not from 0

    # The interval changed: what was learned at 200 ms is not used at 300 ms.
    third = await start_agent(_config(state, target.port, "300ms"), tmp_path)
    try:
        ev = await third.event("baseline_state_discarded")
        assert ev["check"] == "shop" and "interval changed" in ev["why"]
        assert not third.events("baseline_state_restored")
    finally:
        assert await third.stop() == 0
    await target.stop()
