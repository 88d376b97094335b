"""Secrets never come back through a target: hostile servers quote what they were sent
(in a status line, a header, a body, a banner, an error), plainly, encoded and cut off;
no reason that reaches a store, page or log may contain any of it.

Specs are built from TOML through the real config loader (secrets also from *_file and
${ENV}), and every probe runs through the scheduler's boundary, `run_with_deadline`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from agent.config import load
from checks.base import ProbeContext, run_with_deadline
from checks.registry import KINDS
from checks.result import CheckResult

TOKEN = "Zq9-secret-TOKEN-4711xyz"
PASSWORD = "pA55-w0rd-Secret!77"
KEY = "k3y-Hidden-ApiKey-9090"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        async def guarded(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await asyncio.wait_for(handler(r, w), 5)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

        server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


def _variants(raw: bytes) -> list[bytes]:
    """What a hostile server sends back: as is, base64, percent-encoded, upper-cased, and
    behind padding that puts the secret across a reason's length limit."""
    text = raw.decode(errors="replace")
    return [raw, base64.b64encode(raw), quote(text, safe="").encode(), raw.upper(),
            b"x" * 150 + raw, b"y" * 60 + raw, b"z" * 30 + raw, b"w" * 185 + raw]


def _assert_clean(res: CheckResult, *secrets: str) -> None:
    assert not res.ok
    text = res.reason
    for secret in secrets:
        forms = [secret, base64.b64encode(secret.encode()).decode(), quote(secret, safe="")]
        for form in forms:
            for piece in (form[:8], form[-8:], form[4:12]):
                assert piece.lower() not in text.lower(), (piece, text)


def _specs(tmp_path: Path, checks: str) -> list[Any]:
    (tmp_path / "token.txt").write_text(TOKEN + "\n")
    (tmp_path / "password.txt").write_text(PASSWORD + "\n")
    cfg = tmp_path / "onwatch.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp_path}"
[[contacts]]
name = "a"
urls = ["json://127.0.0.1:9/a"]
[defaults]
contacts = ["a"]
{checks}
""")
    return [(c.type, c.spec) for c in load(cfg).checks]


async def _run(kind: str, spec: Any) -> CheckResult:
    ctx = ProbeContext()
    try:
        return await run_with_deadline(KINDS[kind].probe, spec, ctx, 3.0)
    finally:
        await ctx.close()


HTTP_MODES = ["status", "reason", "header", "json", "location", "body_status"]


def _http_answer(mode: str, echo: bytes) -> bytes:
    if mode == "status":
        return b"HTTP/1.1 " + echo + b"\r\n\r\n"
    if mode == "reason":
        return b"HTTP/1.1 503 " + echo + b"\r\nContent-Length: 0\r\n\r\n"
    if mode == "header":
        return b"HTTP/1.1 200 OK\r\n" + echo + b"\r\n\r\n"
    if mode == "json":
        body = json.dumps({"status": echo.decode(errors="replace")}).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)
    if mode == "location":
        return (b"HTTP/1.1 302 Found\r\nLocation: http://[" + echo
                + b"/\r\nContent-Length: 0\r\n\r\n")
    return b"HTTP/1.1 " + echo[:3] + b" " + echo + b"\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("mode", HTTP_MODES)
async def test_http_secrets_are_masked_whatever_the_target_echoes(
        tmp_path: Path, serve: Callable[[Handler], Awaitable[int]], mode: str) -> None:
    seen: list[bytes] = []

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        secret = b" ".join(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                           if line.lower().startswith((b"authorization:", b"x-api-key:")))
        seen.append(secret)
        writer.write(_http_answer(mode, _variants(secret)[len(seen) % 8]))
        await writer.drain()

    port = await serve(hostile)
    base = 'type = "http"\njson = [\'$.status == "ok"\']\n'
    specs = _specs(tmp_path, f"""
[[checks]]
name = "bearer"
url = "http://127.0.0.1:{port}/"
bearer_token = "{TOKEN}"
{base}
[[checks]]
name = "bearer-file"
url = "http://127.0.0.1:{port}/"
bearer_token_file = "token.txt"
{base}
[[checks]]
name = "basic"
url = "http://127.0.0.1:{port}/"
username = "monitor"
password_file = "password.txt"
{base}
[[checks]]
name = "in-url"
url = "http://monitor:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/"
{base}
[[checks]]
name = "api-key"
url = "http://127.0.0.1:{port}/"
headers = {{X-Api-Key = "{KEY}"}}
{base}
""")
    for _round in range(8):  # each round echoes another variant
        for kind, spec in specs:
            _assert_clean(await _run(kind, spec), TOKEN, PASSWORD, KEY)
    assert len(seen) == 40 and all(seen)


def _line_echo(greeting: bytes, answer: Callable[[bytes, int], bytes | None]) -> Handler:
    """A line server: the greeting, then `answer(line, n)` to each line (None: hang up)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        for n in range(20):
            line = (await reader.readline()).rstrip(b"\r\n")
            reply = answer(line, n) if line else None
            if reply is None:
                return
            writer.write(reply)
            await writer.drain()
    return handle


def _echoed(line: bytes, n: int) -> bytes:
    return _variants(line)[n % 8] + b" " + _variants(PASSWORD.encode())[n % 8]


def _smtp(variant: int) -> Handler:
    def answer(line: bytes, n: int) -> bytes | None:
        if line.upper().startswith((b"EHLO", b"HELO")):
            return b"250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n"
        if line.upper().startswith(b"QUIT"):
            return None
        return b"535 5.7.8 refused: " + _echoed(line, variant) + b"\r\n"
    return _line_echo(b"220 mx.test ESMTP\r\n", answer)


def _imap(variant: int) -> Handler:
    def answer(line: bytes, n: int) -> bytes | None:
        tag, _, rest = line.partition(b" ")
        if rest.upper().startswith(b"CAPABILITY"):
            return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
        if rest.upper().startswith(b"LOGOUT"):
            return None
        return tag + b" NO [AUTHENTICATIONFAILED] " + _echoed(line, variant) + b"\r\n"
    return _line_echo(b"* OK IMAP ready\r\n", answer)


def _pop3(variant: int) -> Handler:
    def answer(line: bytes, n: int) -> bytes | None:
        word = line.split(b" ", 1)[0].upper()
        if word == b"CAPA":
            return b"+OK\r\nUSER\r\n.\r\n"
        if word == b"USER":
            return b"+OK\r\n"
        if word == b"QUIT":
            return None
        return b"-ERR " + _echoed(line, variant) + b"\r\n"
    return _line_echo(b"+OK POP3 ready\r\n", answer)


@pytest.mark.parametrize("variant", range(8))
async def test_mail_passwords_are_masked_whatever_the_server_echoes(
        tmp_path: Path, serve: Callable[[Handler], Awaitable[int]], variant: int) -> None:
    smtp, imap, pop3 = (await serve(_smtp(variant)), await serve(_imap(variant)),
                        await serve(_pop3(variant)))
    login = 'username = "monitor"\npassword_file = "password.txt"\nstarttls = "off"'
    specs = _specs(tmp_path, f"""
[[checks]]
name = "smtp"
type = "smtp"
host = "127.0.0.1"
port = {smtp}
{login}
[[checks]]
name = "imap"
type = "imap"
host = "127.0.0.1"
port = {imap}
{login}
[[checks]]
name = "pop3"
type = "pop3"
host = "127.0.0.1"
port = {pop3}
{login}
[[checks]]
name = "flow"
type = "mailflow"
mail_from = "probe@example.test"
rcpt = "probe@example.test"
[checks.smtp]
host = "127.0.0.1"
port = {smtp}
username = "monitor"
password = "{PASSWORD}"
starttls = "off"
[checks.imap]
host = "127.0.0.1"
port = {imap}
username = "monitor"
password = "{PASSWORD}"
starttls = "off"
""")
    for kind, spec in specs:
        res = await _run(kind, spec)
        assert "refused" in res.reason or "ERR" in res.reason or "NO" in res.reason, res.reason
        _assert_clean(res, PASSWORD)


async def test_an_echoed_token_reaches_no_store_page_api_or_log(
        tmp_path: Path, serve: Callable[[Handler], Awaitable[int]]) -> None:
    """The attack as it was seen: the Authorization header as the status line."""
    from tests.support import Receiver, start_agent, wait_for

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"auth"))
        writer.write(b"HTTP/1.1 " + auth + b"\r\n\r\n")
        await writer.drain()

    port = await serve(hostile)
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "api-token-for-this-test-only"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]
[[checks]]
name = "shop"
type = "http"
url = "http://127.0.0.1:{port}/"
bearer_token = "{TOKEN}"
interval = "1s"
timeout = "500ms"
confirm = 1
contacts = ["alice"]
baseline = false
""", tmp_path)
    try:
        async def paged() -> bool:
            return bool(receiver.messages)

        await wait_for(paged, 15, "the page")
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(
                f"{agent.base_url}/api/v1/incidents/1",
                headers={"Authorization": "Bearer api-token-for-this-test-only"}) as r:
            api = await r.text()
        assert "not a valid HTTP answer" in api and "***" in api
    finally:
        assert await agent.stop() == 0
        await receiver.close()
    seen = {"api": api, "pages": json.dumps(receiver.messages), "log": "\n".join(agent.raw_log),
            "store": b"".join(p.read_bytes() for p in state.glob("onwatch.db*")).decode(
                "latin-1")}
    for where, text in seen.items():
        assert TOKEN not in text and TOKEN[:10] not in text, where
