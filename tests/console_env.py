"""The console's test setting: a real `onwatch run` with two people (alice, bob) whose pages
and sign-in links go to a local Receiver, a tcp check of a port the tests close to open an
incident, a rotation, a status page component; and a browser-like HTTP client.

Everything listens on loopback, port 0.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import AgentProcess, Receiver, wait_for

API_TOKEN = "console-tests-shared-token"


#: Ports held bound (never listening) for the tests' lifetime: nobody else can take one
#: and make the failing check pass halfway through a test.
_HELD: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port nobody listens on (the check fails: an incident opens)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return int(s.getsockname()[1])


def config(state: Path, receiver: Receiver, port: int) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "{API_TOKEN}"
timezone = "Europe/Paris"

[web]
public_listen = "127.0.0.1:0"

[status]
title = "Corner Shop"

[[status.components]]
name = "Card payments"
checks = ["till"]

[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]

[[contacts]]
name = "bob"
urls = ["json://127.0.0.1:{receiver.port}/bob?to=bob@shop.example"]

[[roles]]
name = "frontline"
[roles.rotation]
contacts = ["alice", "bob"]
start = "2026-01-05 09:00"
every = "7d"

[[policies]]
name = "shop"
ack_timeout = "10m"
[[policies.steps]]
notify = ["role:frontline"]
[[policies.steps]]
after = "10m"
notify = ["bob"]

[[checks]]
name = "till"
type = "tcp"
host = "127.0.0.1"
port = {port}
interval = "1s"
timeout = "500ms"
confirm = 1
recover = 1
policy = "shop"
"""


def public_base(agent: AgentProcess) -> str:
    assert agent.state_dir is not None
    return "http://" + (agent.state_dir / "public.addr").read_text().strip()


def sign_in_links(receiver: Receiver, who: str) -> list[str]:
    return [m.group(0) for msg in receiver.messages if msg["_path"] == f"/{who}"
            for m in [re.search(r"https?://\S+/console/link/[\w-]+", msg.get("message", ""))]
            if m]


@dataclass
class Browser:
    """An HTTP client that keeps cookies (also for 127.0.0.1) and sends Origin like a
    browser does on a form POST."""

    base: str
    session: aiohttp.ClientSession

    @classmethod
    def open(cls, base: str) -> Browser:
        return cls(base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))

    async def get(self, path: str) -> tuple[int, str, dict[str, str]]:
        async with self.session.get(self.base + path, allow_redirects=False) as r:
            return r.status, await r.text(), dict(r.headers)

    async def post(self, path: str, data: dict[str, Any], *, origin: str | None = "self",
                   ) -> tuple[int, str, dict[str, str]]:
        headers = {"Origin": self.base} if origin == "self" else (
            {"Origin": origin} if origin else {})
        async with self.session.post(self.base + path, data=data, headers=headers,
                                     allow_redirects=False) as r:
            return r.status, await r.text(), dict(r.headers)

    async def csrf(self, path: str) -> str:
        _, html, _ = await self.get(path)
        m = re.search(r'name="csrf" value="([^"]+)"', html)
        assert m, f"no CSRF token on {path}: {html[:500]}"
        return m.group(1)

    async def sign_in(self, receiver: Receiver, who: str, name: str | None = None) -> None:
        before = len(sign_in_links(receiver, who))
        status, _, _ = await self.post("/console/sign-in", {
            "name": name or who, "csrf": await self.csrf("/console/sign-in")})
        assert status == 200
        found = await wait_for(lambda: sign_in_links(receiver, who)[before:], 15,
                               f"a sign-in link for {who}")
        path = "/console/link/" + found[0].rsplit("/console/link/", 1)[1]
        status, html, _ = await self.get(path)
        assert status == 200 and f"Sign in as {who}" in html
        status, _, headers = await self.post(path, {"csrf": await self.csrf(path)})
        assert status == 303 and headers["Location"] == "/console"

    async def close(self) -> None:
        await self.session.close()
