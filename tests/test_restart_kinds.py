"""After a restart only an open *outage* incident marks its check down.

A real `onwatch run` watches a TLS endpoint whose certificate expires in ten
days (an "expiring" incident opens; the endpoint itself is fine) and a POS
service that depends on it. The agent is restarted; then the POS service
breaks. Before the fix, the restored "expiring" incident made the TLS check
read down after the restart (`onwatch_check_up` 0), so the POS outage was
suppressed as "depends on a check that is down" and nobody was paged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import ssl
from pathlib import Path

import trustme
from aiohttp import web

from tests.support import Receiver, start_agent, wait_for


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _tls_site(ca: trustme.CA) -> tuple[web.AppRunner, int]:
    cert = ca.issue_cert("127.0.0.1", not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    app = web.Application()
    app.router.add_get("/", _ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    return runner, runner.addresses[0][1]


async def _pos(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"READY\r\n")
    await writer.drain()
    writer.close()


def _config(state: Path, ca_file: Path, tls_port: int, pos_port: int, rx: Receiver) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"

[[contacts]]
name = "frontline"
urls = ["{rx.url}"]

[[checks]]
name = "shop-tls"
type = "tls"
host = "127.0.0.1"
port = {tls_port}
ca_file = "{ca_file}"
min_days_left = 1
warn_days = 1
interval = "1s"
timeout = "500ms"
recover = 3
recheck_interval = "5s"
contacts = ["frontline"]

[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {pos_port}
expect = "READY"
interval = "1s"
timeout = "500ms"
confirm = 2
recheck_interval = "200ms"
depends_on = ["shop-tls"]
contacts = ["frontline"]
"""


def _incidents(state: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(f"file:{state / 'onwatch.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT check_name, kind, state FROM incidents ORDER BY id").fetchall()
    finally:
        db.close()


async def test_an_expiring_incident_does_not_mark_its_check_down_after_restart(
        tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls_runner, tls_port = await _tls_site(ca)
    pos = await asyncio.start_server(_pos, "127.0.0.1", 0)
    pos_port = pos.sockets[0].getsockname()[1]
    rx = await Receiver().start()
    state = tmp_path / "state"
    text = _config(state, ca_file, tls_port, pos_port, rx)
    agent = await start_agent(text, tmp_path)
    try:
        async def expiring() -> bool:
            return ("shop-tls", "expiring", "open") in _incidents(state)
        await wait_for(expiring, 15, "the expiring incident")
        assert await agent.stop() == 0

        agent = await start_agent(text, tmp_path)
        assert await agent.metric('onwatch_check_up{check="shop-tls"}') != 0.0
        pos.close()
        await pos.wait_closed()

        async def paged() -> bool:
            return any("[DOWN] pos" in t for t in rx.titles())
        await wait_for(paged, 10, "the POS outage to page on its own")
        assert ("pos", "outage", "open") in _incidents(state)
        assert await agent.metric('onwatch_check_up{check="shop-tls"}') != 0.0
        assert not agent.events("outage_suppressed")
    finally:
        await agent.stop()
        await tls_runner.cleanup()
        await rx.close()
