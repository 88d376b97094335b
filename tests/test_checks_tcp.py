"""The tcp probe against real `asyncio.start_server` listeners on 127.0.0.1 port 0.

Every probe runs under `run_with_deadline`, as the scheduler runs it, so a probe that
hangs shows up as a failed assertion on a `timeout` result, not as a stuck test.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.fields import Section
from checks import tcp
from checks._input import compile_bytes
from checks._net import Tls
from checks.base import ProbeContext, run_with_deadline
from checks.result import CheckResult, ErrorKind
from checks.tcp import Step, TcpSpec, script
from tests.support import LocalCerts, free_port, local_certs, no_leaks

# An unclosed socket is collected with a ResourceWarning (StreamWriter.__del__ closes
# it): make that an error, or a probe that forgets to close would pass the leak test.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[[Handler], Awaitable[int]]


class Seen:
    """What the server side observed."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.client_gone = asyncio.Event()
        self.written = 0


@pytest.fixture
def serve(tcp_servers: Serve) -> Serve:
    """Local TCP servers on 127.0.0.1:0 (tests/conftest.py)."""
    return tcp_servers

@pytest.fixture
def seen() -> Seen:
    return Seen()


async def check(spec: TcpSpec, ctx: ProbeContext, timeout: float = 10.0) -> CheckResult:
    return await run_with_deadline(tcp.probe, spec, ctx, timeout)


def pos_terminal(seen: Seen, answer: bytes, *, hang_after: bool = True) -> Handler:
    """Reads one line, answers `answer`, then (by default) waits for the client to leave."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.received += await reader.readline()
            # Two writes, so a client that stops at the first read may miss the match.
            writer.write(answer[:2])
            await writer.drain()
            writer.write(answer[2:])
            await writer.drain()
            if hang_after:
                await reader.read()  # b"" once the probe closes its side
                seen.client_gone.set()
        finally:
            writer.close()

    return handle


async def closes_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Never says a word; closes its side once the client has gone."""
    await reader.read()
    writer.close()


# --- probing ------------------------------------------------------------------------------


async def test_connect_only(serve: Serve, ctx: ProbeContext) -> None:
    port = await serve(closes_at_once)
    result = await check(TcpSpec("127.0.0.1", port), ctx)
    assert result.ok, result.reason
    assert result.reason == "connected"
    assert result.latency_s > 0


async def test_refused(ctx: ProbeContext) -> None:
    port = free_port()
    result = await check(TcpSpec("127.0.0.1", port), ctx)
    assert result.error_kind is ErrorKind.CONNECT
    assert result.reason == f"connection refused by 127.0.0.1:{port}"


async def test_send_and_expect(serve: Serve, ctx: ProbeContext, seen: Seen) -> None:
    port = await serve(pos_terminal(seen, b"PONG ready\r\n"))
    result = await check(TcpSpec("127.0.0.1", port, script(b"PING\r\n", expect=b"PONG")), ctx)
    # The server keeps its side open: the probe must stop at the match, not wait for EOF.
    assert result.ok, result.reason
    assert result.reason == "got b'PONG'"
    assert 4 <= result.observations["bytes_read"] <= 12
    assert seen.received == b"PING\r\n"
    await asyncio.wait_for(seen.client_gone.wait(), 5)  # and it closed its socket


async def test_expect_mismatch(serve: Serve, ctx: ProbeContext, seen: Seen) -> None:
    port = await serve(pos_terminal(seen, b"ERR busy\r\n", hang_after=False))
    result = await check(TcpSpec("127.0.0.1", port, script(b"PING\r\n", expect=b"PONG")), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == (
        "expected b'PONG' not in the 10 bytes the server sent (it began b'ERR busy\\r\\n')"
    )
    assert result.observations["bytes_read"] == 10


async def test_server_closes_without_a_word(serve: Serve, ctx: ProbeContext) -> None:
    port = await serve(closes_at_once)
    result = await check(TcpSpec("127.0.0.1", port, script(expect=b"220 ")), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == f"127.0.0.1:{port} closed the connection without sending anything"


async def test_hang_is_a_timeout_and_the_socket_is_closed(serve: Serve, ctx: ProbeContext,
                                                          seen: Seen) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.received += await reader.readexactly(6)
        await reader.read()  # returns b"" only when the probe closes its side
        seen.client_gone.set()
        writer.close()

    port = await serve(silent)
    started = time.perf_counter()
    spec = TcpSpec("127.0.0.1", port, script(b"HELLO\n", expect=b"OK"))
    result = await run_with_deadline(tcp.probe, spec, ctx, 0.3)
    assert result.error_kind is ErrorKind.TIMEOUT
    assert time.perf_counter() - started < 5
    await asyncio.wait_for(seen.client_gone.wait(), 5)
    assert seen.received == b"HELLO\n"


async def test_timeout_while_sending_to_a_peer_that_never_reads(serve: Serve, ctx: ProbeContext,
                                                                 seen: Seen) -> None:
    """A full send buffer must not keep a cancelled probe (or its socket) alive: a graceful
    close would wait for the peer to read, forever, after the deadline already fired."""
    start_reading = asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await start_reading.wait()
        while await reader.read(1 << 20):  # bounded: the client sent a finite amount
            pass
        seen.client_gone.set()
        writer.close()

    port = await serve(deaf)
    spec = TcpSpec("127.0.0.1", port, script(b"x" * (64 << 20), expect=b"OK"))
    result = await asyncio.wait_for(run_with_deadline(tcp.probe, spec, ctx, 0.3), 5)
    assert result.error_kind is ErrorKind.TIMEOUT
    start_reading.set()
    await asyncio.wait_for(seen.client_gone.wait(), 5)


async def endless(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                  ) -> None:
    """Streams up to 100 MB of noise, until the client goes away."""
    chunk = b"z" * 65536
    try:
        for _ in range(1600):
            writer.write(chunk)
            await writer.drain()
            seen.written += len(chunk)
    except ConnectionError:
        pass  # the client hung up: that is the point
    finally:
        seen.client_gone.set()
        writer.close()


async def test_max_read_bounds_an_endless_stream(serve: Serve, ctx: ProbeContext,
                                                 seen: Seen) -> None:
    port = await serve(lambda r, w: endless(seen, r, w))
    spec = TcpSpec("127.0.0.1", port, script(expect=b"READY"), max_read=64 * 1024)
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason.startswith(
        "expected b'READY' not in the first 65536 bytes the server sent (it began b'zzz")
    assert result.observations["bytes_read"] == 64 * 1024
    await asyncio.wait_for(seen.client_gone.wait(), 5)
    assert seen.written < 20 * 1024 * 1024  # far less than the 100 MB on offer


async def test_no_leaked_sockets(serve: Serve, ctx: ProbeContext, seen: Seen) -> None:
    ports = {
        "pong": await serve(pos_terminal(Seen(), b"PONG\r\n")),
        "err": await serve(pos_terminal(Seen(), b"ERR\r\n", hang_after=False)),
        "close": await serve(closes_at_once),
        "endless": await serve(lambda r, w: endless(Seen(), r, w)),
        "silent": await serve(silent),
    }
    me = psutil.Process()

    fds_before = me.num_fds()
    kinds = []
    for _ in range(5):
        for spec, timeout in [
            (TcpSpec("127.0.0.1", ports["pong"], script(b"PING\n", expect=b"PONG")), 10.0),
            (TcpSpec("127.0.0.1", ports["err"], script(b"PING\n", expect=b"PONG")), 10.0),
            (TcpSpec("127.0.0.1", ports["close"], script(expect=b"PONG")), 10.0),
            (TcpSpec("127.0.0.1", ports["endless"], script(expect=b"PONG"), max_read=4096), 10.0),
            (TcpSpec("127.0.0.1", ports["silent"], script(b"x", expect=b"PONG")), 0.05),
            (TcpSpec("127.0.0.1", free_port()), 10.0),
        ]:
            kinds.append((await check(spec, ctx, timeout)).error_kind)
    assert kinds[:6] == [None, ErrorKind.ASSERTION, ErrorKind.PROTOCOL, ErrorKind.ASSERTION,
                         ErrorKind.TIMEOUT, ErrorKind.CONNECT]
    await no_leaks(ports.values(), fds_before)


# --- scripts and TLS ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LocalCerts:
    return local_certs(tmp_path_factory.mktemp("tcp-ca"), days=90)


def gateway(seen: Seen, *, tls: ssl.SSLContext | None = None, approve: bytes = b"APPROVED 0042\r\n",
            early: bytes = b"", hang_after: bool = True) -> Handler:
    """A payment gateway dialogue: banner, optional STARTTLS, AUTH, a sale answer; then it
    waits for the client to leave (or, hang_after=False, hangs up itself)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"GW1 READY\r\n")
            if tls is not None:
                seen.received += await reader.readline()  # STARTTLS
                writer.write(b"GO TLS\r\n" + early)
                await writer.drain()
                await writer.start_tls(tls)
            for answer in (b"AUTH OK\r\n", approve):
                seen.received += await reader.readline()
                writer.write(answer)
                await writer.drain()
            if hang_after:
                await reader.read()  # until the probe leaves
            seen.client_gone.set()
        except (ConnectionError, ssl.SSLError):
            seen.client_gone.set()
        finally:
            writer.close()

    return handle


SALE = (Step(expect=b"READY"), Step(send=b"AUTH term-7\r\n"), Step(expect=b"AUTH OK"),
        Step(send=b"SALE 1.00\r\n"), Step(regex=compile_bytes(r"APPROVED \d{4}")))


async def test_script_in_steps(serve: Serve, ctx: ProbeContext, seen: Seen) -> None:
    port = await serve(gateway(seen))
    result = await check(TcpSpec("127.0.0.1", port, SALE), ctx)
    assert result.ok, result.reason
    assert result.reason == "all 5 steps passed (last matched regex b'APPROVED \\\\d{4}')"
    assert seen.received == b"AUTH term-7\r\nSALE 1.00\r\n"
    await asyncio.wait_for(seen.client_gone.wait(), 5)


async def test_script_step_fails(serve: Serve, ctx: ProbeContext, seen: Seen) -> None:
    port = await serve(gateway(seen, approve=b"DECLINED 05\r\n", hang_after=False))
    result = await check(TcpSpec("127.0.0.1", port, SALE), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    # Only what came after the previous match ("AUTH OK") is searched.
    assert result.reason == ("step 5: expected regex b'APPROVED \\\\d{4}' not in the 15 bytes "
                             "the server sent (it began b'\\r\\nDECLINED 05\\r\\n')")


async def test_script_server_hangs_up_midway(serve: Serve, ctx: ProbeContext) -> None:
    async def banner_then_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"GW1 READY")
        await reader.readline()
        writer.close()

    port = await serve(banner_then_bye)
    result = await check(TcpSpec("127.0.0.1", port, SALE), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == (f"step 3: 127.0.0.1:{port} closed the connection "
                             "before sending b'AUTH OK'")


async def test_implicit_tls(serve: Serve, ctx: ProbeContext, seen: Seen, certs: LocalCerts) -> None:
    port = await serve_tls(serve, pos_terminal(seen, b"PONG\r\n"), certs.server)
    spec = TcpSpec("127.0.0.1", port, script(b"PING\r\n", b"PONG"),
                   tls=Tls(implicit=True, ca_file=certs.ca_file))
    result = await check(spec, ctx)
    assert result.ok, result.reason
    assert result.reason == "got b'PONG', TLS"
    assert result.observations["tls_s"] > 0
    assert 89 < result.observations["cert_days_left"] <= 90
    await asyncio.wait_for(seen.client_gone.wait(), 5)


async def test_starttls_step(serve: Serve, ctx: ProbeContext, seen: Seen,
                             certs: LocalCerts) -> None:
    port = await serve(gateway(seen, tls=certs.server))
    steps = (Step(expect=b"READY"), Step(send=b"STARTTLS\r\n"), Step(expect=b"GO TLS\r\n"),
             Step(starttls=True), *SALE[1:])
    result = await check(TcpSpec("127.0.0.1", port, steps, tls=Tls(ca_file=certs.ca_file)), ctx)
    assert result.ok, result.reason
    assert result.reason.startswith("all 8 steps passed, TLS")
    assert seen.received == b"STARTTLS\r\nAUTH term-7\r\nSALE 1.00\r\n"


async def test_starttls_refuses_plaintext_sent_before_tls(serve: Serve, ctx: ProbeContext,
                                                          seen: Seen, certs: LocalCerts) -> None:
    port = await serve(gateway(seen, tls=certs.server, early=b"AUTH OK\r\n"))
    steps = (Step(expect=b"READY"), Step(send=b"STARTTLS\r\n"), Step(expect=b"GO TLS\r\n"),
             Step(starttls=True), *SALE[1:])
    result = await check(TcpSpec("127.0.0.1", port, steps, tls=Tls(ca_file=certs.ca_file)), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == f"step 4: 127.0.0.1:{port} sent b'AUTH OK\\r\\n' before TLS started"


async def test_tls_untrusted_certificate(serve: Serve, ctx: ProbeContext,
                                         certs: LocalCerts) -> None:
    port = await serve_tls(serve, pos_terminal(Seen(), b"PONG\r\n"), certs.server)
    spec = TcpSpec("127.0.0.1", port, script(b"PING\r\n", b"PONG"), tls=Tls(implicit=True))
    result = await check(spec, ctx)  # the system store does not know the test CA
    assert result.error_kind is ErrorKind.TLS
    assert result.reason.startswith(f"TLS certificate of 127.0.0.1:{port} not trusted: "
                                    "unable to get local issuer certificate"), result.reason
    unverified = TcpSpec("127.0.0.1", port, script(b"PING\r\n", b"PONG"),
                         tls=Tls(implicit=True, verify=False))
    assert (await check(unverified, ctx)).ok


async def test_tls_name_mismatch(serve: Serve, ctx: ProbeContext, certs: LocalCerts) -> None:
    port = await serve_tls(serve, pos_terminal(Seen(), b"PONG\r\n"), certs.server)
    spec = TcpSpec("127.0.0.1", port, script(b"PING\r\n", b"PONG"),
                   tls=Tls(implicit=True, ca_file=certs.ca_file, server_name="pos.example.com"))
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.TLS
    assert "Hostname mismatch" in result.reason and "pos.example.com" in result.reason


async def test_tls_to_a_plaintext_server(serve: Serve, ctx: ProbeContext,
                                         certs: LocalCerts) -> None:
    async def plaintext(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"GW1 READY\r\n")
        await reader.read(1 << 16)  # the ClientHello, taken for a command
        writer.close()

    port = await serve(plaintext)
    result = await check(TcpSpec("127.0.0.1", port, tls=Tls(implicit=True, ca_file=certs.ca_file)),
                         ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == f"TLS handshake with 127.0.0.1:{port} failed: wrong version number"


async def test_tls_handshake_that_never_ends_is_a_timeout(serve: Serve, ctx: ProbeContext,
                                                          seen: Seen, certs: LocalCerts) -> None:
    port = await serve(silent_then_gone(seen))
    spec = TcpSpec("127.0.0.1", port, tls=Tls(implicit=True, ca_file=certs.ca_file))
    result = await asyncio.wait_for(run_with_deadline(tcp.probe, spec, ctx, 0.3), 5)
    assert result.error_kind is ErrorKind.TIMEOUT
    await asyncio.wait_for(seen.client_gone.wait(), 5)


def silent_then_gone(seen: Seen) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):  # bounded: the client sends a finite amount
            pass
        seen.client_gone.set()
        writer.close()

    return handle


async def serve_tls(serve: Serve, handler: Handler, context: ssl.SSLContext) -> int:
    """Like `serve`, TLS from the first byte (asyncio.start_server's ssl=)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    _tls_servers.append(server)
    return int(server.sockets[0].getsockname()[1])


_tls_servers: list[asyncio.Server] = []


@pytest.fixture(autouse=True)
async def _close_tls_servers() -> AsyncIterator[None]:
    yield
    while _tls_servers:
        server = _tls_servers.pop()
        server.close()
        await server.wait_closed()


async def test_no_leaked_sockets_with_tls(serve: Serve, ctx: ProbeContext,
                                          certs: LocalCerts) -> None:
    ports = {
        "tls": await serve_tls(serve, pos_terminal(Seen(), b"PONG\r\n"), certs.server),
        "plain": await serve(pos_terminal(Seen(), b"PONG\r\n")),
        "silent": await serve(silent_then_gone(Seen())),
        "starttls": await serve(gateway(Seen(), tls=certs.server)),
    }
    me = psutil.Process()
    trusted = Tls(implicit=True, ca_file=certs.ca_file)
    upgrade = (Step(expect=b"READY"), Step(send=b"STARTTLS\r\n"), Step(expect=b"GO TLS\r\n"),
               Step(starttls=True), *SALE[1:])
    fds_before = me.num_fds()
    kinds = []
    for _ in range(3):
        for spec, timeout in [
            (TcpSpec("127.0.0.1", ports["tls"], script(b"PING\n", b"PONG"), tls=trusted), 10.0),
            (TcpSpec("127.0.0.1", ports["tls"], script(b"PING\n", b"PONG"),
                     tls=Tls(implicit=True)), 10.0),
            (TcpSpec("127.0.0.1", ports["plain"], tls=trusted), 10.0),
            (TcpSpec("127.0.0.1", ports["silent"], tls=trusted), 0.1),
            (TcpSpec("127.0.0.1", ports["starttls"], upgrade, tls=Tls(ca_file=certs.ca_file)),
             10.0),
        ]:
            kinds.append((await check(spec, ctx, timeout)).error_kind)
    assert kinds[:5] == [None, ErrorKind.TLS, ErrorKind.TLS, ErrorKind.TIMEOUT, None]

    await no_leaks(ports.values(), fds_before)


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any]) -> tuple[TcpSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[1]", errors, Path("."))
    spec = tcp.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_every_key() -> None:
    spec, errors = parse({"host": "::1", "port": 9100, "send": "PING\r\n", "expect": "PONG",
                          "max_read": "4KiB"})
    assert errors == []
    assert spec == TcpSpec("::1", 9100, script(b"PING\r\n", b"PONG"), 4096)
    assert tcp.target(spec) == "[::1]:9100"


def test_parse_steps_and_tls(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not read at parse time")
    errors: list[str] = []
    sec = Section({"host": "gw.example.com", "port": 7000, "server_name": "gw", "ca_file": "ca.pem",
                   "verify_tls": True, "steps": [{"expect": "READY"}, {"send": "STARTTLS\r\n"},
                                                 {"starttls": True}, {"expect_regex": "OK \\d+"}]},
                  "checks[1]", errors, tmp_path)
    spec = tcp.parse(sec)
    sec.finish()
    assert errors == []
    assert spec == TcpSpec("gw.example.com", 7000,
                           (Step(expect=b"READY"), Step(send=b"STARTTLS\r\n"), Step(starttls=True),
                            Step(regex=compile_bytes(r"OK \d+"))),
                           tls=Tls(False, str(tmp_path / "ca.pem"), True, "gw"))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"host": "pos", "port": 0}, "checks[1]: port: "),
        ({"host": "pos", "port": 70000}, "checks[1]: port: "),
        ({"host": "pos", "port": "9100"}, 'checks[1]: port: must be a whole number, got "9100"'),
        ({"port": 9100}, "checks[1]: host: is required"),
        ({"host": "pos", "port": 1, "send": 7}, "checks[1]: send: must be a string, got 7"),
        ({"host": "pos", "port": 1, "max_read": "lots"}, "checks[1]: max_read: must be a size"),
        ({"host": "pos", "port": 1, "steps": [{"send": "x"}], "expect": "y"},
         "checks[1]: steps: give either steps or the send/expect shorthand, not both"),
        ({"host": "pos", "port": 1, "steps": "PING"},
         'checks[1]: steps: must be a list of tables like {send = "..."}, got "PING"'),
        ({"host": "pos", "port": 1, "steps": [{"send": "x", "expect": "y"}]},
         'checks[1]: steps[1]: must have exactly one of send, expect, expect_regex, starttls, '
         'got "send", "expect"'),
        ({"host": "pos", "port": 1, "steps": [{"sned": "x"}]},
         'checks[1]: steps[1]: must have exactly one of send, expect, expect_regex, starttls, '
         'got "sned"'),
        ({"host": "pos", "port": 1, "steps": [{"expect": ""}]},
         'checks[1]: steps[1]: expect: must be a non-empty string, got ""'),
        ({"host": "pos", "port": 1, "steps": [{"expect_regex": "APPROVED ("}]},
         "checks[1]: steps[1]: expect_regex: not a regular expression RE2 accepts (missing )"),
        ({"host": "pos", "port": 1, "steps": [{"starttls": False}]},
         "checks[1]: steps[1]: starttls: must be true, got false"),
        ({"host": "pos", "port": 1, "tls": True, "steps": [{"starttls": True}]},
         "checks[1]: steps: a starttls step needs tls = false"),
        ({"host": "pos", "port": 1, "verify_tls": False},
         "checks[1]: verify_tls: only used with tls = true or a starttls step"),
        ({"host": "pos", "port": 1, "tls": True, "ca_file": "no-such-ca.pem"},
         "checks[1]: ca_file: no such file: no-such-ca.pem"),
    ],
)
def test_parse_errors(raw: dict[str, Any], error: str) -> None:
    _, errors = parse(raw)
    assert len(errors) == 1 and errors[0].startswith(error), errors
