"""End to end: a real `onwatch run` process watches a local HTTP target.

The target is stopped (connections refused) and started again on the same
port; the test sees the incident opened in the store, the DOWN page
delivered through real Apprise to a local json:// receiver, /metrics saying
the check is down, then the resolution and its message, then a clean
SIGTERM exit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aiohttp import web

from tests.support import Receiver, query, start_agent, wait_for


class Target:
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._index)
        self.runner = web.AppRunner(app, access_log=None)
        self.site: web.TCPSite | None = None
        self.port = 0

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="<h1>Welcome to the shop</h1>")

    async def start(self) -> None:
        if self.runner.server is None:
            await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.site is not None
        await self.site.stop()


def config(state: Path, target_port: int, receiver: Receiver) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"

[[contacts]]
name = "frontline"
urls = ["{receiver.url}"]

[[checks]]
name = "shop"
type = "http"
url = "http://127.0.0.1:{target_port}/"
keyword = "Welcome"
interval = "1s"
timeout = "500ms"
confirm = 2
recheck_interval = "200ms"
recover = 2
contacts = ["frontline"]
severity = "critical"
"""


def incidents(state: Path) -> list[tuple[int, str, str]]:
    return query(state, "SELECT id, check_name, state FROM incidents ORDER BY id")


async def test_outage_is_paged_exported_and_resolved(tmp_path: Path) -> None:
    target, receiver = Target(), await Receiver().start()
    await target.start()
    state = tmp_path / "state"
    agent = await start_agent(config(state, target.port, receiver), tmp_path)
    try:
        async def up() -> bool:
            return await agent.metric('onwatch_check_up{check="shop"}') == 1.0

        await wait_for(up, 10, "the check to be up")
        assert incidents(state) == []

        await target.stop()

        async def paged() -> bool:
            return any("[DOWN] shop" in t for t in receiver.titles())

        await wait_for(paged, 10, "the DOWN page at the receiver")
        assert incidents(state) == [(1, "shop", "open")]
        assert await agent.metric('onwatch_check_up{check="shop"}') == 0.0
        assert await agent.metric('onwatch_incidents_open{severity="critical"}') == 1.0
        down = next(m for m in receiver.messages if "[DOWN]" in m["title"])
        assert "incident #1" in down["title"]
        assert "refused" in down["message"] or "connect" in down["message"].lower()
        assert f"127.0.0.1:{target.port}" in down["message"]

        async def delivered_metric() -> bool:
            got = await agent.metric(
                'onwatch_notifications_total{channel_kind="json",result="ok"}')
            return bool(got and got >= 1)

        await wait_for(delivered_metric, 5, "the delivery to be counted")

        await target.start()

        async def resolved() -> bool:
            return any("[RESOLVED] shop" in t for t in receiver.titles())

        await wait_for(resolved, 10, "the RESOLVED message at the receiver")
        assert incidents(state) == [(1, "shop", "resolved")]
        assert await agent.metric('onwatch_check_up{check="shop"}') == 1.0
        assert len([t for t in receiver.titles() if "[DOWN]" in t]) == 1

        status, body = await agent.get("/healthz")
        assert status == 200 and '"status": "ok"' in body
    finally:
        code = await agent.stop()
        await receiver.close()
        await target.runner.cleanup()
    assert code == 0, agent.raw_log[-20:]
    assert agent.events("agent_stopped")
    # The timeline has every step, from the store the CLI reads.
    db = sqlite3.connect(state / "onwatch.db")
    kinds = [r[0] for r in db.execute("SELECT kind FROM timeline WHERE incident_id = 1 "
                                      "ORDER BY seq")]
    db.close()
    assert kinds[0] == "opened"
    assert "notification_delivered" in kinds and "resolved" in kinds
