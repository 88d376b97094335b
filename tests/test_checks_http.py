"""The http probe against real servers on 127.0.0.1 port 0: aiohttp apps, raw asyncio
servers for non-HTTP answers, and certificates made here with trustme.

Every probe runs under `run_with_deadline`, as the scheduler runs it, so a probe that
hangs shows up as a failed assertion on a `timeout` result, not as a stuck test.
"""

from __future__ import annotations

import asyncio
import socket
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
from checks.base import CheckResult, ErrorKind, ProbeContext, run_with_deadline
from checks.http import HttpSpec

WELCOME = b"<html><h1>Welcome to the shop</h1></html>"
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

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/ok", self.ok)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/loop", self.loop)
        app.router.add_get("/hang", self.hang)
        app.router.add_get("/huge", self.huge)
        return app

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
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext()
    yield context
    await context.close()


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


def free_port() -> int:
    """A port nobody listens on: bound once by us, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def test_latency_over_the_limit(base: str, ctx: ProbeContext) -> None:
    # No waiting for time: no real request answers within a microsecond.
    result = await check(HttpSpec(f"{base}/ok", max_latency=1e-6), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason.startswith("responded in ")
    assert result.reason.endswith("s, over the 1e-06s limit")
    assert result.latency_s > 1e-6


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

    def client_sockets() -> list[Any]:
        return [c for c in me.net_connections(kind="tcp")
                if c.raddr and c.raddr.port in (port, garbage_port)]

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
        assert [r.ok for r in results[:6]] == [True, False, True, False, False, False]
        assert results[5].error_kind is ErrorKind.TIMEOUT
        await eventually(lambda: not client_sockets(), "client sockets still open")
        await eventually(lambda: me.num_fds() <= fds_before, "file descriptors leaked")


# --- TLS ----------------------------------------------------------------------------------


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    cert = ca.issue_cert(*names)
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


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any], base_dir: Path) -> tuple[HttpSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[0]", errors, base_dir)
    spec = http.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_every_key(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not read at parse time")
    spec, errors = parse({
        "url": "https://shop.example/", "method": "POST", "headers": {"X-Probe": "1"},
        "expect_status": [200, 201], "keyword": "Welcome", "max_latency": "2s",
        "verify_tls": True, "ca_file": "ca.pem", "follow_redirects": False, "max_body": "64KiB",
    }, tmp_path)
    assert errors == []
    assert spec == HttpSpec("https://shop.example/", "POST", (("X-Probe", "1"),),
                            frozenset({200, 201}), "Welcome", 2.0, True,
                            str(tmp_path / "ca.pem"), False, 65536)
    assert parse({"url": "http://a/", "expect_status": 204}, tmp_path)[0].expect_status == {204}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"expect_status": ["200"]},
         "checks[0]: expect_status: must be a list of HTTP status codes (100-599), got ['200']"),
        ({"expect_status": [200, 999]}, "checks[0]: expect_status: must be a list of HTTP"),
        ({"method": "FETCH"}, "checks[0]: method: must be one of GET, HEAD"),
        ({"method": "HEAD", "keyword": "x"},
         "checks[0]: keyword: cannot be checked with method HEAD"),
        ({"headers": {"X-A": "1\r\nX-Evil: 2"}}, "checks[0]: headers: header 'X-A' must have"),
        ({"ca_file": "missing.pem"}, "checks[0]: ca_file: no such file"),
        ({"max_latency": "fast"}, 'checks[0]: max_latency: must be a duration like "10s"'),
        ({"url": "ftp://shop.example/"}, "checks[0]: url: must be a URL starting with http://"),
        ({"follow_redirect": True}, "checks[0]: "),  # a typo: reported by finish()
    ],
)
def test_parse_errors(tmp_path: Path, raw: dict[str, Any], error: str) -> None:
    _, errors = parse({"url": "http://shop.example/", **raw}, tmp_path)
    assert len(errors) == 1 and errors[0].startswith(error), errors
    assert str(next(iter(raw))) in errors[0]


async def eventually(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Poll a condition that the event loop makes true soon (bounded in time and count)."""
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)
