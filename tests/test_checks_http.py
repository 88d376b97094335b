"""The http probe against real servers on 127.0.0.1 port 0: aiohttp apps, raw asyncio
servers for non-HTTP answers, and certificates made here with trustme.

Every probe runs under `run_with_deadline`, as the scheduler runs it, so a probe that
hangs shows up as a failed assertion on a `timeout` result, not as a stuck test.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import trustme
from aiohttp import web

from agent.fields import Section
from checks import http
from checks._httpjson import Condition
from checks._input import compile_bytes
from checks.base import ProbeContext, run_with_deadline
from checks.http import HttpSpec
from checks.result import CheckResult, ErrorKind
from tests.support import free_port, no_leaks

WELCOME = b"<html><h1>Welcome to the shop</h1></html>"
DOC = {"status": "ok", "queue": {"depth": 12, "name": "orders"}, "items": [{"id": 7}, {"id": 0}],
       "ratio": 0.5, "open": True, "note": None, "odd key": "x"}
PASSWORD = "s3cret pw"
TOKEN = "tok-123-secret"
HUGE = 100 * 1024 * 1024
CHUNK = b"x" * 65536

# An unclosed socket or transport is collected with a ResourceWarning: make it an error.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

StartApp = Callable[..., Awaitable[str]]


class Shop:
    """The target web app; records what the probes did to it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (method, X-Probe header)
        self.hang_closed = asyncio.Event()
        self.hang_transports: list[Any] = []
        self.huge_done = asyncio.Event()
        self.huge_written = 0
        self.huge_peak_rss = 0
        self.doc: bytes = json.dumps(DOC).encode()
        self.content = "Today: fresh bread"
        self.authorizations: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/ok", self.ok)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/loop", self.loop)
        app.router.add_get("/hang", self.hang)
        app.router.add_get("/huge", self.huge)
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/json", self.json)
        app.router.add_get("/private", self.private)
        app.router.add_get("/page", self.page)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"method": request.method, "body": body.decode(),
                                  "content_type": request.headers.get("Content-Type")})

    async def json(self, request: web.Request) -> web.Response:
        return web.Response(body=self.doc, content_type="application/json")

    async def private(self, request: web.Request) -> web.Response:
        """Answers only to alice's password or the bearer token."""
        given = request.headers.get("Authorization")
        self.authorizations.append(given)
        basic = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        if given in (basic, f"Bearer {TOKEN}"):
            return web.Response(text="the back office")
        return web.Response(status=401, text=f"nope, not {given}",
                            headers={"WWW-Authenticate": 'Basic realm="shop"'})

    async def page(self, request: web.Request) -> web.Response:
        """A page with parts that change on every request, and content that should not."""
        html = (f'<form><input name="csrf" value="csrf_token={secrets.token_hex(8)}"></form>'
                f'<span id="time">{time.time_ns()}</span><p>{self.content}</p>')
        return web.Response(text=html, content_type="text/html")

    async def ok(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.headers.get("X-Probe")))
        return web.Response(body=WELCOME, content_type="text/html")

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="sorry")

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def hang(self, request: web.Request) -> web.Response:
        self.hang_transports.append(request.transport)
        try:
            await asyncio.Event().wait()  # never set: only the client can end this
        finally:
            # Runs when the client's connection is lost (handler_cancellation=True).
            self.hang_closed.set()
        raise AssertionError("unreachable")

    async def huge(self, request: web.Request) -> web.StreamResponse:
        """100 MB, written until the client goes away; samples RSS while the client reads."""
        resp = web.StreamResponse(headers={"Content-Length": str(HUGE)})
        await resp.prepare(request)
        me = psutil.Process()
        try:
            for _ in range(HUGE // len(CHUNK)):
                await resp.write(CHUNK)
                self.huge_written += len(CHUNK)
                self.huge_peak_rss = max(self.huge_peak_rss, me.memory_info().rss)
        except ConnectionError:
            pass  # the client hung up: that is the point
        finally:
            self.huge_done.set()
        return resp


@pytest.fixture
async def start_app() -> AsyncIterator[StartApp]:
    """Start an aiohttp app on 127.0.0.1:0 (optionally TLS); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, tls: ssl.SSLContext | None = None) -> str:
        # handler_cancellation: a handler learns that its client disconnected.
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        port = runner.addresses[0][1]
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def shop() -> Shop:
    return Shop()


@pytest.fixture
async def base(start_app: StartApp, shop: Shop) -> str:
    return await start_app(shop.app())


async def check(spec: HttpSpec, ctx: ProbeContext, timeout: float = 10.0) -> CheckResult:
    return await run_with_deadline(http.probe, spec, ctx, timeout)


async def raw_server(answer: bytes) -> tuple[asyncio.Server, int]:
    """A TCP server that reads a request head, sends `answer` verbatim, and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


# --- plain HTTP ---------------------------------------------------------------------------


async def test_success_with_status_and_keyword(base: str, ctx: ProbeContext, shop: Shop) -> None:
    spec = HttpSpec(f"{base}/ok", keyword="Welcome", expect_status=frozenset({200}),
                    headers=(("X-Probe", "onwatch"),), max_latency=30.0)
    result = await check(spec, ctx)
    assert result.ok, result.reason
    assert result.error_kind is None
    assert result.observations["status_code"] == 200
    assert 0 < result.observations["body_bytes_read"] <= len(WELCOME)
    assert 0 < result.latency_s < 30
    assert shop.seen == [("GET", "onwatch")]


async def test_head_reads_no_body(base: str, ctx: ProbeContext, shop: Shop) -> None:
    result = await check(HttpSpec(f"{base}/ok", method="HEAD"), ctx)
    assert result.ok, result.reason
    assert result.observations["body_bytes_read"] == 0
    assert shop.seen == [("HEAD", None)]


async def test_refused_connection(ctx: ProbeContext) -> None:
    port = free_port()
    result = await check(HttpSpec(f"http://127.0.0.1:{port}/"), ctx)
    assert result.error_kind is ErrorKind.CONNECT
    assert result.reason == f"connection refused by 127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("path", "expect", "ok", "reason"),
    [
        ("/status/503", frozenset(), False, "HTTP 503 Service Unavailable, expected 2xx"),
        ("/status/204", frozenset(), True, "HTTP 204"),
        ("/status/503", frozenset({503}), True, "HTTP 503"),
        ("/status/200", frozenset({201, 204}), False, "HTTP 200 OK, expected one of 201, 204"),
        ("/status/404", frozenset({200}), False, "HTTP 404 Not Found, expected 200"),
    ],
)
async def test_status(base: str, ctx: ProbeContext, path: str, expect: frozenset[int], ok: bool,
                      reason: str) -> None:
    result = await check(HttpSpec(f"{base}{path}", expect_status=expect), ctx)
    assert (result.ok, result.reason) == (ok, reason)
    assert result.error_kind is (None if ok else ErrorKind.ASSERTION)
    assert result.observations["status_code"] == int(path.rsplit("/", 1)[1])


async def test_missing_keyword(base: str, ctx: ProbeContext) -> None:
    result = await check(HttpSpec(f"{base}/ok", keyword="Closed for holidays"), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == (
        f'keyword "Closed for holidays" not found in the whole body ({len(WELCOME)} bytes)'
    )


async def test_latency_over_the_limit_is_degraded(base: str, ctx: ProbeContext) -> None:
    # No waiting for time: no real request answers within a microsecond.
    result = await check(HttpSpec(f"{base}/ok", max_latency=1e-6), ctx)
    assert result.ok and result.degraded
    assert result.error_kind is None
    assert result.reason.startswith("responded in ")
    assert result.reason.endswith("s, over the 1e-06s limit")
    assert result.latency_s > 1e-6
    assert result.observations["status_code"] == 200
    # A failed assertion still fails: degraded is for answers that are right but slow.
    wrong = await check(HttpSpec(f"{base}/status/500", max_latency=1e-6), ctx)
    assert wrong.error_kind is ErrorKind.ASSERTION and not wrong.degraded
    fast = await check(HttpSpec(f"{base}/ok", max_latency=30.0), ctx)
    assert fast.ok and not fast.degraded


async def test_redirect_followed(base: str, ctx: ProbeContext) -> None:
    result = await check(HttpSpec(f"{base}/redirect", keyword="Welcome"), ctx)
    assert result.ok, result.reason
    assert result.observations["status_code"] == 200


async def test_redirect_not_followed(base: str, ctx: ProbeContext, shop: Shop) -> None:
    result = await check(HttpSpec(f"{base}/redirect", follow_redirects=False), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "HTTP 302 Found, expected 2xx"
    expected_302 = HttpSpec(f"{base}/redirect", follow_redirects=False,
                            expect_status=frozenset({302}))
    assert (await check(expected_302, ctx)).ok
    assert shop.seen == []  # /ok was never requested


async def test_redirect_loop_is_a_protocol_failure(base: str, ctx: ProbeContext) -> None:
    result = await check(HttpSpec(f"{base}/loop"), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == "more than 10 redirects (a redirect loop?)"


async def test_timeout_closes_the_connection(base: str, ctx: ProbeContext, shop: Shop) -> None:
    started = time.perf_counter()
    result = await run_with_deadline(http.probe, HttpSpec(f"{base}/hang"), ctx, 0.3)
    assert result.error_kind is ErrorKind.TIMEOUT
    assert time.perf_counter() - started < 5
    # The server sees the cancelled probe's connection go away.
    await asyncio.wait_for(shop.hang_closed.wait(), 5)
    assert all(t is None or t.is_closing() for t in shop.hang_transports)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not a valid HTTP answer: Bad status line:"),
        (b"", "server closed the connection without a complete HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
         "response body broken off: Not enough data"),
    ],
    ids=["garbage", "hang-up", "short-body"],
)
async def test_non_http_answer_is_a_protocol_failure(ctx: ProbeContext, answer: bytes,
                                                      reason: str) -> None:
    server, port = await raw_server(answer)
    async with server:
        result = await check(HttpSpec(f"http://127.0.0.1:{port}/"), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason.startswith(reason), result.reason
    assert "\n" not in result.reason and len(result.reason) < 300


async def test_huge_response_is_read_only_up_to_max_body(base: str, ctx: ProbeContext,
                                                         shop: Shop) -> None:
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    result = await check(HttpSpec(f"{base}/huge", keyword="not in there"), ctx)
    elapsed = time.perf_counter() - started
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == 'keyword "not in there" not found in the first 1 MiB'
    assert result.observations["body_bytes_read"] == 1 << 20
    assert elapsed < 5
    await asyncio.wait_for(shop.huge_done.wait(), 5)  # the server noticed the hang-up
    # Far less than 100 MB left the server: 1 MiB plus socket buffers.
    assert shop.huge_written < 20 * 1024 * 1024
    rss_after = psutil.Process().memory_info().rss
    assert max(shop.huge_peak_rss, rss_after) - rss_before < 20 * 1024 * 1024


async def test_keyword_found_stops_reading(base: str, ctx: ProbeContext, shop: Shop) -> None:
    result = await check(HttpSpec(f"{base}/huge", keyword="xxxx"), ctx)
    assert result.ok, result.reason
    assert result.observations["body_bytes_read"] < 1 << 20


async def test_no_leaked_sockets(base: str, ctx: ProbeContext) -> None:
    port = int(base.rsplit(":", 1)[1])
    garbage, garbage_port = await raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    me = psutil.Process()

    assert (await check(HttpSpec(f"{base}/ok"), ctx)).ok  # warm up the session
    fds_before = me.num_fds()
    async with garbage:
        results = [
            await check(HttpSpec(f"{base}/ok", keyword="Welcome"), ctx),
            await check(HttpSpec(f"{base}/status/500"), ctx),
            await check(HttpSpec(f"{base}/huge", max_body=4096), ctx),
            await check(HttpSpec(f"http://127.0.0.1:{free_port()}/"), ctx),
            await check(HttpSpec(f"http://127.0.0.1:{garbage_port}/"), ctx),
            await check(HttpSpec(f"{base}/hang"), ctx, timeout=0.2),
        ]
        for _ in range(20):
            results.append(await check(HttpSpec(f"{base}/huge", max_body=1000), ctx))
        for spec in (HttpSpec(f"{base}/ok", phase_timings=True),
                     HttpSpec(f"{base}/hang", phase_timings=True),
                     HttpSpec(f"{base}/huge", regex=compile_bytes(r"y"), max_body=4096),
                     HttpSpec(f"{base}/page", fingerprint=True),
                     HttpSpec(f"{base}/huge", keyword_absent="x")):
            results.append(await check(spec, ctx, timeout=0.2))
        assert [r.ok for r in results[-5:]] == [True, False, False, True, False]
        assert [r.ok for r in results[:6]] == [True, False, True, False, False, False]
        assert results[5].error_kind is ErrorKind.TIMEOUT
        await no_leaks((port, garbage_port), fds_before)


# --- TLS ----------------------------------------------------------------------------------


def server_tls(ca: trustme.CA, *names: str, not_after: dt.datetime | None = None
               ) -> ssl.SSLContext:
    cert = ca.issue_cert(*names, not_after=not_after)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def ca_file(tmp_path: Path) -> tuple[trustme.CA, str]:
    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


async def test_tls_success_with_private_ca(start_app: StartApp, shop: Shop, ctx: ProbeContext,
                                           ca_file: tuple[trustme.CA, str]) -> None:
    ca, path = ca_file
    base = await start_app(shop.app(), server_tls(ca, "127.0.0.1"))
    result = await check(HttpSpec(f"{base}/ok", keyword="Welcome", ca_file=path), ctx)
    assert result.ok, result.reason
    assert result.observations["status_code"] == 200


async def test_tls_untrusted_ca(start_app: StartApp, shop: Shop, ctx: ProbeContext,
                                ca_file: tuple[trustme.CA, str]) -> None:
    _, path = ca_file
    base = await start_app(shop.app(), server_tls(trustme.CA(), "127.0.0.1"))
    result = await check(HttpSpec(f"{base}/ok", ca_file=path), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == "TLS certificate verify failed: unable to get local issuer certificate"
    # Default verification (the system store) does not know the test CA either.
    assert (await check(HttpSpec(f"{base}/ok"), ctx)).error_kind is ErrorKind.TLS
    # verify_tls = false accepts it.
    insecure = await check(HttpSpec(f"{base}/ok", keyword="Welcome", verify_tls=False), ctx)
    assert insecure.ok, insecure.reason


async def test_tls_hostname_mismatch(start_app: StartApp, shop: Shop, ctx: ProbeContext,
                                     ca_file: tuple[trustme.CA, str]) -> None:
    ca, path = ca_file
    base = await start_app(shop.app(), server_tls(ca, "pos.example.com"))
    result = await check(HttpSpec(f"{base}/ok", ca_file=path), ctx)
    assert result.error_kind is ErrorKind.TLS
    # OpenSSL words it "IP address mismatch" for an address, "Hostname mismatch" for a name.
    assert result.reason == ("TLS certificate verify failed: IP address mismatch, certificate is "
                             "not valid for '127.0.0.1'.")


async def test_https_to_a_plain_http_port(base: str, ctx: ProbeContext) -> None:
    port = base.rsplit(":", 1)[1]
    result = await check(HttpSpec(f"https://127.0.0.1:{port}/ok"), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == f"TLS handshake with 127.0.0.1:{port} failed: wrong version number"


# --- request body, status classes, body assertions -------------------------------------


async def test_post_body_with_inferred_content_type(base: str, ctx: ProbeContext) -> None:
    spec = HttpSpec(f"{base}/echo", method="POST", body=b'{"ping": 1}', json=conditions(
        '$.method == "POST"', '$.content_type == "application/json"',
        '$.body == "{\\"ping\\": 1}"'))
    result = await check(spec, ctx)
    assert result.ok, result.reason


async def test_put_body_with_content_type(base: str, ctx: ProbeContext) -> None:
    spec = HttpSpec(f"{base}/echo", method="PUT", body=b"a,b", content_type="text/csv",
                   json=conditions('$.method == "PUT"', '$.content_type == "text/csv"',
                                   '$.body == "a,b"'))
    result = await check(spec, ctx)
    assert result.ok, result.reason


@pytest.mark.parametrize(
    ("path", "expect", "ok", "reason"),
    [
        ("/status/204", ["2xx"], True, "HTTP 204"),
        ("/status/503", ["4xx"], False, "HTTP 503 Service Unavailable, expected 4xx"),
        ("/status/503", ["5xx"], True, "HTTP 503"),
        ("/status/404", ["2xx", 301], False, "HTTP 404 Not Found, expected one of 2xx, 301"),
        ("/redirect", ["3xx"], True, "HTTP 302"),
    ],
)
async def test_status_classes(base: str, ctx: ProbeContext, tmp_path: Path, path: str,
                              expect: list[Any], ok: bool, reason: str) -> None:
    spec, errors = parse({"url": f"{base}{path}", "expect_status": expect,
                          "follow_redirects": False}, tmp_path)
    assert errors == []
    result = await check(spec, ctx)
    assert (result.ok, result.reason) == (ok, reason)


async def test_keyword_absent(base: str, ctx: ProbeContext) -> None:
    result = await check(HttpSpec(f"{base}/ok", keyword_absent="Closed for holidays"), ctx)
    assert result.ok, result.reason
    result = await check(HttpSpec(f"{base}/ok", keyword="shop", keyword_absent="Welcome"), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == 'body contains "Welcome", which must not appear'


async def test_keyword_absent_found_stops_reading(base: str, ctx: ProbeContext) -> None:
    result = await check(HttpSpec(f"{base}/huge", keyword_absent="xxxx"), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.observations["body_bytes_read"] < 1 << 20


async def test_regex(base: str, ctx: ProbeContext) -> None:
    ok = await check(HttpSpec(f"{base}/ok", regex=compile_bytes(r"<h1>Welcome to the \w+</h1>")),
                     ctx)
    assert ok.ok, ok.reason
    result = await check(HttpSpec(f"{base}/ok", regex=compile_bytes(r"<h2>.*</h2>")), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == (
        f'regex "<h2>.*</h2>" does not match the whole body ({len(WELCOME)} bytes)')
    capped = await check(HttpSpec(f"{base}/huge", regex=compile_bytes(r"y"), max_body=4096), ctx)
    assert capped.reason == 'regex "y" does not match the first 4 KiB'


# --- JSON conditions ----------------------------------------------------------------------


def conditions(*texts: str) -> tuple[Condition, ...]:
    errors: list[str] = []
    sec = Section({"url": "http://a/", "json": list(texts)}, "checks[0]", errors, Path())
    spec = http.parse(sec)
    assert errors == []
    return spec.json


@pytest.mark.parametrize(
    ("condition", "why"),
    [
        ('$.status == "ok"', None),
        ('$.status != "ok"', '$.status is "ok"'),
        ("$.queue.depth < 100", None),
        ("$.queue.depth >= 13", "$.queue.depth is 12"),
        ("$.items[0].id != 0", None),
        ("$.items[1].id != 0", "$.items[1].id is 0"),
        ("$.items[2].id == 1", "$.items has 2 items"),
        ("$.queue.size == 1", '$.queue has no field "size"'),
        ("$.status.code == 1", '$.status is "ok", not an object'),
        ("$.status[0] == 1", '$.status is "ok", not an array'),
        ("$.ratio <= 0.5", None),
        ("$.ratio == 0.50", None),
        ("$.open == true", None),
        ("$.open == 1", "$.open is true"),
        ("$.note == null", None),
        ('$["odd key"] == "x"', None),
        ('$.queue.name > "a"', None),
        ("$.status < 5", '$.status is "ok", not a number'),
        ("$.queue == null", "$.queue is an object"),
        ("$.items[0] != null", None),
    ],
)
async def test_json_conditions(base: str, ctx: ProbeContext, condition: str,
                               why: str | None) -> None:
    result = await check(HttpSpec(f"{base}/json", json=conditions(condition)), ctx)
    if why is None:
        assert result.ok, result.reason
    else:
        assert result.error_kind is ErrorKind.ASSERTION
        assert result.reason == f"JSON condition {condition} failed: {why}"


async def test_json_conditions_all_must_hold(base: str, ctx: ProbeContext) -> None:
    spec = HttpSpec(f"{base}/json", json=conditions('$.status == "ok"', "$.queue.depth < 10"))
    result = await check(spec, ctx)
    assert result.reason == "JSON condition $.queue.depth < 10 failed: $.queue.depth is 12"


async def test_json_body_larger_than_max_body(base: str, ctx: ProbeContext) -> None:
    spec = HttpSpec(f"{base}/json", json=conditions('$.status == "ok"'), max_body=64)
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "JSON body larger than max_body (64 bytes): not evaluated"


async def test_body_that_is_not_json(base: str, ctx: ProbeContext, shop: Shop) -> None:
    result = await check(HttpSpec(f"{base}/ok", json=conditions('$.status == "ok"')), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "body is not JSON (Expecting value), for the json conditions"
    shop.doc = b"[" * 100_000 + b"]" * 100_000  # valid JSON, deeper than Python recurses
    deep = await check(HttpSpec(f"{base}/json", json=conditions("$[0] != 1"),
                               max_body=1 << 20), ctx)
    assert deep.reason == "JSON body nested too deeply to evaluate"


# --- auth ---------------------------------------------------------------------------------


async def test_basic_auth(base: str, ctx: ProbeContext, shop: Shop) -> None:
    good = await check(HttpSpec(f"{base}/private", username="alice", password=PASSWORD), ctx)
    assert good.ok, good.reason
    bad = HttpSpec(f"{base}/private", username="alice", password="wrong horse")
    result = await check(bad, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "HTTP 401 Unauthorized, expected 2xx"
    assert "wrong horse" not in repr(bad) and "wrong horse" not in repr(result)
    assert shop.authorizations[0] == "Basic " + base64.b64encode(
        f"alice:{PASSWORD}".encode()).decode()


async def test_bearer_token(base: str, ctx: ProbeContext, shop: Shop) -> None:
    spec = HttpSpec(f"{base}/private", bearer_token=TOKEN, keyword="back office")
    result = await check(spec, ctx)
    assert result.ok, result.reason
    assert shop.authorizations == [f"Bearer {TOKEN}"]
    assert TOKEN not in repr(spec)
    missing = await check(HttpSpec(f"{base}/private"), ctx)
    assert missing.reason == "HTTP 401 Unauthorized, expected 2xx"


def test_auth_from_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "token").write_text(TOKEN)
    monkeypatch.setenv("SHOP_PW", PASSWORD)
    from_file, errors = parse({"username": "alice", "password_file": "pw"}, tmp_path)
    assert errors == [] and from_file.password == PASSWORD
    from_env, errors = parse({"username": "alice", "password": "${SHOP_PW}"}, tmp_path)
    assert errors == [] and from_env.password == PASSWORD
    token, errors = parse({"bearer_token_file": "token"}, tmp_path)
    assert errors == [] and token.bearer_token == TOKEN
    _, errors = parse({"bearer_token": "abc\r\nX-Evil: 1"}, tmp_path)
    assert errors == ["checks[0]: bearer_token: must not contain line breaks or NUL characters"]
    _, errors = parse({"username": "alice", "password": 1234}, tmp_path)
    assert errors == ["checks[0]: password: must be a string, got a number"]


# --- phases, certificate, fingerprint -----------------------------------------------------


async def test_phase_timings(start_app: StartApp, shop: Shop, ctx: ProbeContext,
                             ca_file: tuple[trustme.CA, str]) -> None:
    ca, path = ca_file
    base = await start_app(shop.app(), server_tls(ca, "localhost"))
    url = base.replace("127.0.0.1", "localhost") + "/redirect"  # a name to resolve, 2 hops
    result = await check(HttpSpec(url, ca_file=path, phase_timings=True), ctx)
    assert result.ok, result.reason
    phases = {k: result.observations[k] for k in ("dns_s", "connect_s", "tls_s", "first_byte_s")}
    assert all(v > 0 for v in phases.values()), phases
    assert sum(phases.values()) <= result.latency_s
    plain = await check(HttpSpec(url, ca_file=path), ctx)
    assert plain.ok and "connect_s" not in plain.observations


async def test_phase_timings_plain_http(base: str, ctx: ProbeContext) -> None:
    result = await check(HttpSpec(f"{base}/ok", phase_timings=True), ctx)
    assert result.ok, result.reason
    obs = result.observations
    assert obs["dns_s"] == 0 and obs["tls_s"] == 0  # an address, no TLS
    assert obs["connect_s"] > 0 and obs["first_byte_s"] > 0
    failed = await check(HttpSpec(f"http://127.0.0.1:{free_port()}/", phase_timings=True), ctx)
    assert failed.error_kind is ErrorKind.CONNECT and "first_byte_s" in failed.observations


@pytest.mark.parametrize("verify", [True, False])
async def test_certificate_days_left(start_app: StartApp, shop: Shop, ctx: ProbeContext,
                                     ca_file: tuple[trustme.CA, str], verify: bool) -> None:
    ca, path = ca_file
    not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    base = await start_app(shop.app(), server_tls(ca, "127.0.0.1", not_after=not_after))
    # A small body: aiohttp releases the connection before `request()` even returns.
    result = await check(HttpSpec(f"{base}/ok", ca_file=path if verify else None,
                                 verify_tls=verify), ctx)
    assert result.ok, result.reason
    assert 39.9 < result.observations["tls_cert_days_left"] <= 40


async def test_no_certificate_days_over_plain_http(base: str, ctx: ProbeContext) -> None:
    result = await check(HttpSpec(f"{base}/ok"), ctx)
    assert "tls_cert_days_left" not in result.observations


IGNORE = (compile_bytes(r"csrf_token=\w+"), compile_bytes(r'<span id="time">.*?</span>'))


async def test_fingerprint(base: str, ctx: ProbeContext, shop: Shop) -> None:
    spec = HttpSpec(f"{base}/page", fingerprint=True, fingerprint_ignore=IGNORE)
    first, second = await check(spec, ctx), await check(spec, ctx)
    assert first.ok and second.ok
    value = first.observations["content_fingerprint"]
    assert value == second.observations["content_fingerprint"]  # dynamic parts ignored
    assert value == int(value) and 0 <= value < 2**52
    shop.content = "Hacked by someone"
    changed = await check(spec, ctx)
    assert changed.ok and changed.observations["content_fingerprint"] != value
    # Without the ignore list, the token and the clock change it on every request.
    raw = HttpSpec(f"{base}/page", fingerprint=True)
    assert ((await check(raw, ctx)).observations["content_fingerprint"]
            != (await check(raw, ctx)).observations["content_fingerprint"])


async def test_no_leaked_sockets_over_tls(start_app: StartApp, shop: Shop, ctx: ProbeContext,
                                          ca_file: tuple[trustme.CA, str]) -> None:
    ca, path = ca_file
    base = await start_app(shop.app(), server_tls(ca, "127.0.0.1"))
    port = int(base.rsplit(":", 1)[1])
    me = psutil.Process()
    assert (await check(HttpSpec(f"{base}/ok", ca_file=path), ctx)).ok  # warm up
    fds_before = me.num_fds()
    results = [
        await check(HttpSpec(f"{base}/ok", ca_file=path, phase_timings=True), ctx),
        await check(HttpSpec(f"{base}/json", ca_file=path, json=conditions("$.open == true")),
                    ctx),
        await check(HttpSpec(f"{base}/ok"), ctx),  # not trusted
        await check(HttpSpec(f"{base}/hang", ca_file=path, phase_timings=True), ctx, 0.2),
        await check(HttpSpec(f"{base}/huge", ca_file=path, max_body=4096), ctx),
    ]
    assert [r.error_kind for r in results] == [None, None, ErrorKind.TLS, ErrorKind.TIMEOUT,
                                               None]
    assert all("tls_cert_days_left" in r.observations for r in results if r.ok)
    await no_leaks([port], fds_before)


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any], base_dir: Path) -> tuple[HttpSpec, list[str]]:
    errors: list[str] = []
    sec = Section({"url": "http://shop.example/", **raw}, "checks[0]", errors, base_dir)
    spec = http.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_every_key(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not read at parse time")
    spec, errors = parse({
        "url": "https://shop.example/api", "method": "POST", "headers": {"X-Probe": "1"},
        "body": '{"ping": 1}', "content_type": "application/json; charset=utf-8",
        "expect_status": [200, "3xx"], "keyword": "Welcome", "keyword_absent": "Fatal",
        "regex": r"v\d+", "json": ['$.status == "ok"'], "max_latency": "2s",
        "username": "alice", "password": PASSWORD, "verify_tls": True, "ca_file": "ca.pem",
        "follow_redirects": False, "max_body": "64KiB", "phase_timings": True,
        "fingerprint": True, "fingerprint_ignore": ["csrf=\\w+"],
    }, tmp_path)
    assert errors == []
    assert spec == HttpSpec(
        "https://shop.example/api", "POST", (("X-Probe", "1"),),
        frozenset({200, *range(300, 400)}), "Welcome", 2.0, True, str(tmp_path / "ca.pem"),
        False, 65536, b'{"ping": 1}', "application/json; charset=utf-8", "Fatal",
        compile_bytes(r"v\d+"), (Condition('$.status == "ok"', ("status",), "==", "ok"),),
        "alice", PASSWORD, None, True, True, (compile_bytes(r"csrf=\w+"),))
    assert parse({"expect_status": 204}, tmp_path)[0].expect_status == {204}
    assert parse({"expect_status": "2XX"}, tmp_path)[0].expect_status == set(range(200, 300))
    assert parse({"expect_status": ["200"]}, tmp_path)[0].expect_status == {200}


def test_parse_defaults(tmp_path: Path) -> None:
    spec, errors = parse({}, tmp_path)
    assert errors == []
    assert spec == HttpSpec("http://shop.example/")
    assert http.target(spec) == "http://shop.example/"
    assert http.target(HttpSpec("https://bob:pw@shop.example/")) == "https://bob:***@shop.example/"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"expect_status": ["2xy"]},
         'checks[0]: expect_status: must be HTTP status codes (100-599) or classes like "2xx", '
         'got ["2xy"]'),
        ({"expect_status": [200, 999]}, "checks[0]: expect_status: must be HTTP status codes"),
        ({"expect_status": [True]}, "checks[0]: expect_status: must be HTTP status codes"),
        ({"expect_status": []}, "checks[0]: expect_status: must not be empty"),
        ({"method": "FETCH"}, "checks[0]: method: must be one of GET, HEAD"),
        ({"method": "HEAD", "keyword": "x"},
         "checks[0]: keyword: cannot be checked with method HEAD"),
        ({"method": "HEAD", "json": ["$.a == 1"]}, "checks[0]: json: cannot be checked with"),
        ({"method": "HEAD", "fingerprint": True}, "checks[0]: fingerprint: cannot be checked"),
        ({"body": "x"}, "checks[0]: body: is not sent with method GET; use POST, PUT"),
        ({"content_type": "text/plain"}, "checks[0]: content_type: only used with body"),
        ({"headers": {"X-A": "1\r\nX-Evil: 2"}}, "checks[0]: headers: header 'X-A' must have"),
        ({"regex": "(unclosed"},
         "checks[0]: regex: not a regular expression RE2 accepts (missing )"),
        ({"fingerprint_ignore": ["x"]},
         "checks[0]: fingerprint_ignore: only used with fingerprint = true"),
        ({"username": "alice"}, "checks[0]: password: is required with username"),
        ({"password": PASSWORD}, "checks[0]: username: is required with password"),
        ({"username": "a:b", "password": "x"}, "checks[0]: username: must not contain ':'"),
        ({"bearer_token": "${ONWATCH_TEST_UNSET_VARIABLE}"},
         "checks[0]: bearer_token: environment variable ONWATCH_TEST_UNSET_VARIABLE is not set"),
        ({"ca_file": "missing.pem"}, "checks[0]: ca_file: no such file"),
        ({"max_latency": "fast"}, 'checks[0]: max_latency: must be a duration like "10s"'),
        ({"url": "ftp://shop.example/"}, "checks[0]: url: must be a URL starting with http://"),
        ({"phase_timing": True}, "checks[0]: "),  # a typo: reported by finish()
    ],
)
def test_parse_errors(tmp_path: Path, raw: dict[str, Any], error: str) -> None:
    _, errors = parse(raw, tmp_path)
    assert len(errors) == 1 and errors[0].startswith(error), errors
    assert PASSWORD not in errors[0]


def test_parse_errors_with_two_keys(tmp_path: Path) -> None:
    _, errors = parse({"method": "POST", "body": "x", "content_type": "text/plain",
                       "headers": {"content-type": "text/csv"}}, tmp_path)
    assert errors == ["checks[0]: content_type: given in headers too; keep one"]
    _, errors = parse({"username": "a", "password": "b", "bearer_token": "c"}, tmp_path)
    assert errors == ["checks[0]: bearer_token: give either username and password or "
                      "bearer_token"]
    _, errors = parse({"url": "https://bob@shop.example/", "bearer_token": "c"}, tmp_path)
    assert errors == ["checks[0]: url: carries a user name; give credentials in one place"]
    _, errors = parse({"headers": {"Authorization": "x"}, "bearer_token": "c"}, tmp_path)
    assert errors == ["checks[0]: headers: Authorization is set by username/bearer_token; "
                      "keep one"]


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        ('status == "ok"', 'must start with $ (the document), like $.status == "ok"'),
        ('$.status = "ok"',
         'expected an operator (==, !=, <, <=, >, >=) after $.status, got "= \\"ok\\""'),
        ("$.status == ok", 'expected a JSON value after == (a "string", a number, true, '
                           'false or null), got "ok"'),
        ("$.status ==", "expected a JSON value after == (a"),
        ("$.items == [1]", "compares with one value, not an array or object"),
        ("$.open < true", "< compares numbers or strings, not true"),
        ("$.a..b == 1", 'expected an operator (==, !=, <, <=, >, >=) after $.a, got '
                        '"..b == 1" (names with other characters go in ["..."])'),
        ("$[x] == 1", "expected an operator (==, !=, <, <=, >, >=) after $, got"),
        ('$["\\q"] == 1', '["\\q"] is not a valid JSON string in brackets'),
    ],
)
def test_json_condition_errors(tmp_path: Path, condition: str, error: str) -> None:
    _, errors = parse({"json": ['$.fine == 1', condition]}, tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"checks[0]: json[1]: {json.dumps(condition)}: {error}"), errors
