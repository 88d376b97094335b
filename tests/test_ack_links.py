"""Acknowledgement links against the real daemon: bound to one episode of an incident;
API callers cannot say how an action was taken."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import aiohttp

from tests.support import Receiver, start_agent, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(state: Path, receiver: Receiver, port: int) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "token-for-the-ack-link-tests"

[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]

[[policies]]
name = "shop"
ack_timeout = "off"
reopen_window = "10m"
[[policies.steps]]
notify = ["alice"]

[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {port}
interval = "1s"
timeout = "500ms"
confirm = 1
recover = 1
recheck_interval = "200ms"
policy = "shop"
baseline = false
"""


def _links(receiver: Receiver) -> list[str]:
    return [m.group(1) for msg in receiver.messages
            if (m := re.search(r"Acknowledge: (\S+)", msg.get("message", "")))]


async def test_a_link_from_an_earlier_episode_cannot_ack_the_reopened_incident(
        tmp_path: Path) -> None:
    receiver = await Receiver().start()
    port = _free_port()
    agent = await start_agent(_config(tmp_path / "state", receiver, port), tmp_path)
    api = {"Authorization": "Bearer token-for-the-ack-link-tests"}
    server: asyncio.Server | None = None
    try:
        await wait_for(lambda: _async(len(_links(receiver)) >= 1), 15, "the first page")
        first = _links(receiver)[0]

        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        server = await asyncio.start_server(accept, "127.0.0.1", port)
        await wait_for(lambda: _async(any("RESOLVED" in t for t in receiver.titles())), 15,
                       "the resolution")
        server.close()
        await server.wait_closed()
        server = None
        await wait_for(lambda: _async(len(_links(receiver)) >= 2), 15, "the reopen's page")
        second = _links(receiver)[-1]
        assert second != first
        async with aiohttp.ClientSession() as s:
            for method in ("GET", "POST"):
                async with s.request(method, first) as r:
                    assert r.status == 410, (method, r.status)
                    assert "reopened" in await r.text()
            async with s.get(f"{agent.base_url}/api/v1/incidents/1", headers=api) as r:
                inc = await r.json()
            assert inc["state"] == "open", inc
            assert any(e["kind"] == "reopened" for e in inc["timeline"])
            async with s.get(second) as r:
                assert r.status == 200 and "Acknowledge as alice" in await r.text()
            # An API call is recorded as one, whatever it claims to be.
            async with s.post(f"{agent.base_url}/api/v1/incidents/1/ack", headers=api,
                              json={"by": "mallory", "via": "link"}) as r:
                assert r.status == 200
            async with s.get(f"{agent.base_url}/api/v1/incidents/1", headers=api) as r:
                inc = await r.json()
            acks = [e for e in inc["timeline"] if e["kind"] == "acknowledged"]
            assert [a["data"]["via"] for a in acks] == ["api"], acks
            assert "via api" in acks[0]["message"]
            async with s.post(second) as r:
                assert r.status == 409  # already acknowledged (by the API call)
    finally:
        if server is not None:
            server.close()
        assert await agent.stop() == 0
        await receiver.close()


async def _async(value: bool) -> bool:
    return value
