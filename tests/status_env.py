"""Helpers for the status page's tests: an HTTP target that can break and recover on the
same port, a config full of secrets, mail parsing, Chromium for Playwright.

Everything listens on loopback, port 0. Chromium is Debian's (`apt-get install chromium`);
no browser is ever downloaded. Without it the browser tests skip, except under CI (CI=true),
where they fail, as tests/dovecot.py does for dovecot.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support import ROOT, Mailbox

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("ONWATCH_SCREENSHOTS", ROOT / "results" / "status-page"))

#: Things that must never reach a public surface (the config below puts them in).
SECRET_URL_KEY = "SECRETKEY-9f8e7d"
BEARER = "BEARER-SECRET-abc123"
API_TOKEN = "api-token-SECRET-0123456789"
INTERNAL_HOST = "127.0.0.2"
CHECK = "shop-backend-7"
CONTACT = "alice-oncall"
POLICY = "night-escalation"
TAG = "pos-lane"
DESCRIPTION = "backend on db01.corp behind the VPN"


LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><rect width="40" '
        'height="40" rx="8" fill="#0550ae"/><path d="M9 27h22l-3-12H12z" fill="#fff"/>'
        '<circle cx="15" cy="31" r="2.5" fill="#fff"/><circle cx="26" cy="31" r="2.5" '
        'fill="#fff"/></svg>')


def require_chromium() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    why = (f"Chromium is not installed ({CHROMIUM} missing); "
           "install it with: apt-get install chromium")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} -- .ci/run should have installed it", pytrace=False)
    pytest.skip(why)


def mails(box: Mailbox, address: str | None = None) -> list[EmailMessage]:
    """What the aiosmtpd Mailbox (tests/support.py) received, parsed; only to `address`."""
    out = []
    for raw in box.messages:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if address is None or msg["To"] == address:
            out.append(msg)
    return out


def body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link(msg: EmailMessage, path: str) -> str:
    m = re.search(rf"https?://\S+{re.escape(path)}\S+", body(msg))
    assert m, f"no {path} link in {body(msg)!r}"
    return m.group(0)


class Target:
    """An HTTP service on a fixed loopback address that can be stopped and started again."""

    def __init__(self, host: str = INTERNAL_HOST) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._index)
        self.runner = web.AppRunner(app, access_log=None)
        self.site: web.TCPSite | None = None
        self.host, self.port = host, 0

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="shop ok")

    async def start(self) -> None:
        if self.runner.server is None:
            await self.runner.setup()
        self.site = web.TCPSite(self.runner, self.host, self.port)
        await self.site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.site is not None
        await self.site.stop()

    async def close(self) -> None:
        await self.runner.cleanup()


def config(state: Path, target: Target, *, receiver_url: str, smtp_port: int | None,
           pos_port: int, extra: str = "") -> str:
    """Two components: "Online shop" (the target, which tests break) and "Card payments in
    store" (by tag: a tcp check of `pos_port`, which stays up). Writes the logo too."""
    (state.parent / "logo.svg").write_text(LOGO)
    mail = f"""
[status.email]
smtp = "127.0.0.1:{smtp_port}"
from = "status@shop.example"
cooldown = "1s"
""" if smtp_port else ""
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
timezone = "Europe/Paris"
api_token = "{API_TOKEN}"

[web]
public_listen = "127.0.0.1:0"

[status]
title = "Corner Shop"
logo = "logo.svg"
rollup_every = "1s"
{mail}
[[status.components]]
name = "Online shop"
group = "Website"
description = "Browsing, basket and checkout"
checks = ["{CHECK}"]

[[status.components]]
name = "Card payments in store"
tags = ["{TAG}"]

[[contacts]]
name = "{CONTACT}"
urls = ["{receiver_url}"]

[[policies]]
name = "{POLICY}"
[[policies.steps]]
after = "0s"
notify = ["{CONTACT}"]

[[checks]]
name = "{CHECK}"
type = "http"
description = "{DESCRIPTION}"
url = "http://{target.host}:{target.port}/health?key={SECRET_URL_KEY}"
bearer_token = "{BEARER}"
interval = "1s"
timeout = "500ms"
confirm = 2
recheck_interval = "200ms"
recover = 2
policy = "{POLICY}"

[[checks]]
name = "pos-lane-1"
type = "tcp"
host = "127.0.0.1"
port = {pos_port}
tags = ["{TAG}"]
interval = "1s"
timeout = "500ms"
{extra}
"""


def secrets(target: Target, receiver_port: int) -> list[str]:
    return [SECRET_URL_KEY, BEARER, API_TOKEN, INTERNAL_HOST, f":{target.port}", CHECK,
            CONTACT, POLICY, TAG, "db01.corp", "refused", "connect", "127.0.0.1:"
            f"{receiver_port}", "pos-lane-1", "http://127.0.0.2"]


def leaks(text: str, forbidden: list[str]) -> list[str]:
    return [s for s in forbidden if s.lower() in text.lower()]


async def fetch(url: str, method: str = "GET", **kw: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.request(method, url, allow_redirects=False,
                                                       **kw) as r:
        return r.status, await r.text(), dict(r.headers)
