"""A manual resolve must not silence a broken check: the check becomes unknown, and its
next confirmed failure opens a new incident and pages, within the usual confirm time;
/healthz, the metrics and the store agree at each point."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp

from tests.support import Receiver, free_port, start_agent, wait_for

TOKEN = "manual-resolve-test-token"


def _config(state: Path, receiver: Receiver, port: int) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "{TOKEN}"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]
[[policies]]
name = "p"
ack_timeout = "off"
reopen_window = "30m"
[[policies.steps]]
notify = ["alice"]
[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {port}
interval = "1s"
timeout = "500ms"
confirm = 2
recheck_interval = "200ms"
policy = "p"
baseline = false
"""


def _open_in_store(state: Path) -> list[int]:
    db = sqlite3.connect(f"file:{state / 'onwatch.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute(
            "SELECT id FROM incidents WHERE state != 'resolved' ORDER BY id")]
    finally:
        db.close()


async def test_resolving_a_still_failing_check_by_hand_pages_again(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(_config(state, receiver, free_port()), tmp_path)

    async def pages() -> int:
        return len([m for m in receiver.messages if "RESOLVED" not in m.get("title", "")])

    async def healthz_down() -> list[str]:
        _, text = await agent.get("/healthz")
        return list(json.loads(text)["checks_down"])

    try:
        await wait_for(lambda: _at_least(pages(), 1), 15, "the first page")
        assert await healthz_down() == ["pos"]
        assert await agent.metric('onwatch_check_up{check="pos"}') == 0.0
        async with aiohttp.ClientSession() as s, s.post(
                f"{agent.base_url}/api/v1/incidents/1/resolve", json={"by": "bob"},
                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200, await r.text()
        resolved_at = asyncio.get_running_loop().time()
        # Right after: nothing open, and nobody claims the check is down (it is unknown).
        assert _open_in_store(state) == []
        assert await healthz_down() == []
        assert await agent.metric('onwatch_check_up{check="pos"}') is None
        # The target still refuses: confirmed again (1 run + 1 re-check) and paged anew.
        await wait_for(lambda: _at_least(pages(), 2), 6, "the page after the manual resolve")
        took = asyncio.get_running_loop().time() - resolved_at
        assert took < 3.5, f"the new incident paged {took:.1f}s after the resolve"
        assert _open_in_store(state) == [2]  # a new incident, not the resolved one reopened
        assert await healthz_down() == ["pos"]
        assert await agent.metric('onwatch_check_up{check="pos"}') == 0.0
        assert agent.events("check_state_forgotten")
    finally:
        assert await agent.stop() == 0
        await receiver.close()


async def _at_least(value: object, n: int) -> bool:
    return (await value) >= n  # type: ignore[misc]
