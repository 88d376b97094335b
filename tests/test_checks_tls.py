"""The tls probe against real `asyncio.start_server` listeners on 127.0.0.1 port 0, with
certificates made here by trustme (custom expiry dates included).

Every probe runs under `run_with_deadline`, as the scheduler runs it, so a probe that
hangs shows up as a failed assertion on a `timeout` result, not as a stuck test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.fields import Section
from checks import tls
from checks._x509 import cert_not_after, parse_cert
from checks.base import ProbeContext, run_with_deadline
from checks.registry import KINDS
from checks.result import CheckResult, ErrorKind
from checks.tls import TlsSpec
from tests.support import free_port, no_leaks

# An unclosed socket is collected with a ResourceWarning: make it an error.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[..., Awaitable[int]]
UTC = dt.UTC


class Seen:
    def __init__(self) -> None:
        self.connections = 0
        self.client_gone = asyncio.Event()


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def serve(tcp_servers: Serve) -> Serve:
    """Local TCP servers on 127.0.0.1:0 (tests/conftest.py)."""
    return tcp_servers

def until_client_leaves(seen: Seen) -> Handler:
    """Says nothing (over TLS: after the handshake); closes once the client has gone."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            for _ in range(1000):  # bounded: the client's bytes, then b"" at EOF
                if not await reader.read(65536):
                    break
        except OSError:
            pass
        finally:
            seen.client_gone.set()
            writer.close()

    return handle


def answers(text: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(text)
        await writer.drain()
        writer.close()

    return handle


class Certs:
    """A CA trusted through `ca_file`, and server contexts with certificates it issues."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        self.ca_file = str(tmp_path / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)

    def server(self, *names: str, days: float = 90, ca: trustme.CA | None = None,
               not_before: dt.datetime | None = None) -> ssl.SSLContext:
        # An hour more than the whole days, so "in N days" does not depend on the clock.
        not_after = dt.datetime.now(UTC) + dt.timedelta(days=days, hours=1)
        cert = (ca or self.ca).issue_cert(*(names or ("127.0.0.1",)), not_after=not_after,
                                          not_before=not_before)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


async def check(spec: TlsSpec, ctx: ProbeContext, timeout: float = 10.0) -> CheckResult:
    return await run_with_deadline(tls.probe, spec, ctx, timeout)


def date_in(days: float) -> str:
    return (dt.datetime.now(UTC) + dt.timedelta(days=days, hours=1)).strftime("%Y-%m-%d")


# --- probing ------------------------------------------------------------------------------


async def test_success(serve: Serve, ctx: ProbeContext, certs: Certs, seen: Seen) -> None:
    port = await serve(until_client_leaves(seen), certs.server("127.0.0.1", days=90))
    result = await check(TlsSpec("127.0.0.1", port, ca_file=certs.ca_file), ctx)
    assert result.ok and not result.degraded, result.reason
    assert result.reason.startswith(f"certificate valid until {date_in(90)} (90 days), "
                                    "issued by Testing CA #"), result.reason
    assert result.reason.endswith("(trustme v1.2.1), TLSv1.3") or "TLSv1.2" in result.reason
    obs = result.observations
    assert 89.9 < obs["cert_days_left"] < 90.1
    assert obs["cert_fingerprint"] == int(obs["cert_fingerprint"]) < 2**52
    assert obs["connect_s"] > 0 and obs["tls_s"] > 0
    await asyncio.wait_for(seen.client_gone.wait(), 5)  # the probe closed its connection


async def test_fingerprints_stable_and_changed(serve: Serve, ctx: ProbeContext, certs: Certs,
                                               seen: Seen) -> None:
    first = await serve(until_client_leaves(seen), certs.server("127.0.0.1"))
    renewed = await serve(until_client_leaves(seen), certs.server("127.0.0.1"))
    a1 = await check(TlsSpec("127.0.0.1", first, ca_file=certs.ca_file), ctx)
    a2 = await check(TlsSpec("127.0.0.1", first, ca_file=certs.ca_file), ctx)
    b = await check(TlsSpec("127.0.0.1", renewed, ca_file=certs.ca_file), ctx)
    assert a1.ok and a2.ok and b.ok
    assert a1.observations["cert_fingerprint"] == a2.observations["cert_fingerprint"]
    # trustme makes a new key for every certificate
    assert a1.observations["cert_fingerprint"] != b.observations["cert_fingerprint"]


async def test_fingerprint_survives_a_renewal_that_keeps_the_key(
        serve: Serve, ctx: ProbeContext, certs: Certs, seen: Seen, tmp_path: Path) -> None:
    leaf = certs.ca.issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    old = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    ca_key = serialization.load_pem_private_key(certs.ca.private_key_pem.bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    renewed = (x509.CertificateBuilder()
               .subject_name(old.subject).issuer_name(old.issuer)
               .public_key(key.public_key())  # type: ignore[arg-type]
               .serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime.now(UTC) - dt.timedelta(days=1))
               .not_valid_after(dt.datetime.now(UTC) + dt.timedelta(days=90))
               .add_extension(old.extensions.get_extension_for_class(
                   x509.SubjectAlternativeName).value, critical=False)
               .sign(ca_key, hashes.SHA256()))
    (tmp_path / "renewed.pem").write_bytes(renewed.public_bytes(serialization.Encoding.PEM))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "renewed.pem", tmp_path / "key.pem")
    before_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(before_context)
    ports = [await serve(until_client_leaves(seen), c) for c in (before_context, context)]
    before, after = [await check(TlsSpec("127.0.0.1", p, ca_file=certs.ca_file), ctx)
                     for p in ports]
    assert before.ok and after.ok, (before.reason, after.reason)
    assert before.observations["cert_days_left"] != after.observations["cert_days_left"]
    assert before.observations["cert_fingerprint"] == after.observations["cert_fingerprint"]


async def test_server_name_is_sent_and_checked(serve: Serve, ctx: ProbeContext, certs: Certs,
                                               seen: Seen) -> None:
    names: list[str | None] = []
    context = certs.server("pos.example.com")
    context.sni_callback = lambda sock, name, _: names.append(name)  # type: ignore[assignment]
    port = await serve(until_client_leaves(seen), context)
    spec = TlsSpec("127.0.0.1", port, server_name="pos.example.com", ca_file=certs.ca_file)
    result = await check(spec, ctx)
    assert result.ok, result.reason
    assert names == ["pos.example.com"]


async def test_timeout_closes_the_connection(serve: Serve, ctx: ProbeContext,
                                             seen: Seen) -> None:
    port = await serve(until_client_leaves(seen))  # plain TCP: accepts, never handshakes
    started = time.perf_counter()
    result = await check(TlsSpec("127.0.0.1", port), ctx, timeout=0.3)
    assert result.error_kind is ErrorKind.TIMEOUT
    assert result.reason == "no complete answer within 0.3s"
    assert time.perf_counter() - started < 5
    await asyncio.wait_for(seen.client_gone.wait(), 5)


async def test_refused(ctx: ProbeContext) -> None:
    port = free_port()
    result = await check(TlsSpec("127.0.0.1", port), ctx)
    assert result.error_kind is ErrorKind.CONNECT
    assert result.reason == f"connection refused by 127.0.0.1:{port}"


async def test_dns_failure(ctx: ProbeContext) -> None:
    result = await check(TlsSpec("no-such-host.invalid", 443), ctx)
    assert result.error_kind is ErrorKind.DNS
    assert result.reason.startswith("cannot resolve host 'no-such-host.invalid'")


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (answers(b"220 mail.example ESMTP ready\r\n"),
         "TLS handshake with 127.0.0.1:{port} failed: wrong version number (the server does "
         "not speak TLS on this port)"),
        (answers(b""), "127.0.0.1:{port} closed the connection during the TLS handshake"),
    ],
    ids=["plain-text", "hang-up"],
)
async def test_not_tls(serve: Serve, ctx: ProbeContext, handler: Handler, reason: str) -> None:
    port = await serve(handler)
    result = await check(TlsSpec("127.0.0.1", port), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason.startswith(reason.format(port=port)), result.reason
    assert "\n" not in result.reason and "_ssl.c" not in result.reason


async def test_wrong_hostname(serve: Serve, ctx: ProbeContext, certs: Certs,
                              seen: Seen) -> None:
    context = certs.server("pos.example.com", "www.pos.example.com")
    port = await serve(until_client_leaves(seen), context)
    result = await check(TlsSpec("127.0.0.1", port, ca_file=certs.ca_file), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == "certificate is for pos.example.com, www.pos.example.com, not 127.0.0.1"
    by_name = TlsSpec("127.0.0.1", port, server_name="shop.example", ca_file=certs.ca_file)
    result = await check(by_name, ctx)
    assert result.reason == ("certificate is for pos.example.com, www.pos.example.com, "
                             "not shop.example")
    assert 89 < result.observations["cert_days_left"] < 91  # read by the inspecting handshake
    # verify = false only inspects: the name is not checked.
    inspected = await check(TlsSpec("127.0.0.1", port, verify=False), ctx)
    assert inspected.ok, inspected.reason


async def test_untrusted_ca(serve: Serve, ctx: ProbeContext, certs: Certs, seen: Seen) -> None:
    port = await serve(until_client_leaves(seen), certs.server(ca=trustme.CA()))
    result = await check(TlsSpec("127.0.0.1", port, ca_file=certs.ca_file), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason.startswith(
        f"TLS certificate of 127.0.0.1:{port} not trusted: unable to get local issuer "
        "certificate (issued by Testing CA #"), result.reason
    # The system store does not know trustme's CA either.
    assert (await check(TlsSpec("127.0.0.1", port), ctx)).error_kind is ErrorKind.TLS
    assert (await check(TlsSpec("127.0.0.1", port, verify=False), ctx)).ok


async def test_inspection_that_hangs_keeps_the_tls_reason(
        serve: Serve, ctx: ProbeContext, certs: Certs, seen: Seen,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first connection handshakes (with an untrusted certificate), the inspecting
    second one is never answered: the result is still a TLS failure, not a timeout."""
    monkeypatch.setattr(tls, "INSPECT_LIMIT_S", 0.2)
    context = certs.server(ca=trustme.CA())
    hold = until_client_leaves(seen)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        if seen.connections > 1:
            return await hold(reader, writer)
        try:
            await writer.start_tls(context)
        except (ssl.SSLError, OSError):
            pass  # the client rejected the certificate, as it should
        finally:
            writer.transport.abort()

    port = await serve(handler)
    result = await check(TlsSpec("127.0.0.1", port, ca_file=certs.ca_file), ctx, timeout=5)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == (f"TLS certificate of 127.0.0.1:{port} not trusted: unable to get "
                             "local issuer certificate")
    assert "cert_days_left" not in result.observations
    await asyncio.wait_for(seen.client_gone.wait(), 5)


@pytest.mark.parametrize(
    ("days", "ok", "degraded", "kind", "reason"),
    [
        (9, False, False, ErrorKind.ASSERTION, "certificate expires in 9 days ({date})"),
        (20, True, True, None, "certificate expires in 20 days ({date})"),
        (0, False, False, ErrorKind.ASSERTION, "certificate expires within a day ({date})"),
        (45, True, False, None, "certificate valid until {date} (45 days), issued by"),
    ],
    ids=["expiring-soon", "warn-window", "last-day", "fine"],
)
async def test_expiry_thresholds(serve: Serve, ctx: ProbeContext, certs: Certs, seen: Seen,
                                 days: int, ok: bool, degraded: bool, kind: ErrorKind | None,
                                 reason: str) -> None:
    port = await serve(until_client_leaves(seen), certs.server(days=days))
    result = await check(TlsSpec("127.0.0.1", port, ca_file=certs.ca_file), ctx)
    assert (result.ok, result.degraded, result.error_kind) == (ok, degraded, kind), result
    assert result.reason.startswith(reason.format(date=date_in(days))), result.reason
    assert days < result.observations["cert_days_left"] < days + 0.1


async def test_thresholds_are_configurable(serve: Serve, ctx: ProbeContext, certs: Certs,
                                           seen: Seen) -> None:
    port = await serve(until_client_leaves(seen), certs.server(days=9))
    spec = TlsSpec("127.0.0.1", port, ca_file=certs.ca_file, min_days_left=7, warn_days=7)
    result = await check(spec, ctx)
    assert result.ok and not result.degraded, result.reason


@pytest.mark.parametrize("verify", [True, False])
async def test_expired(serve: Serve, ctx: ProbeContext, certs: Certs, seen: Seen,
                       verify: bool) -> None:
    port = await serve(until_client_leaves(seen), certs.server(days=-4))
    spec = TlsSpec("127.0.0.1", port, ca_file=certs.ca_file if verify else None, verify=verify)
    result = await check(spec, ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == f"certificate expired on {date_in(-4)} (3 days ago)"
    assert -4 < result.observations["cert_days_left"] < -3


async def test_not_yet_valid(serve: Serve, ctx: ProbeContext, certs: Certs, seen: Seen) -> None:
    starts = dt.datetime.now(UTC) + dt.timedelta(days=10)
    port = await serve(until_client_leaves(seen), certs.server(days=400, not_before=starts))
    result = await check(TlsSpec("127.0.0.1", port, ca_file=certs.ca_file), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == f"certificate is not valid before {starts:%Y-%m-%d}"


async def test_no_leaked_sockets(serve: Serve, ctx: ProbeContext, certs: Certs,
                                 seen: Seen) -> None:
    good = await serve(until_client_leaves(seen), certs.server())
    wrong = await serve(until_client_leaves(seen), certs.server("pos.example.com"))
    expired = await serve(until_client_leaves(seen), certs.server(days=-4))
    plain = await serve(answers(b"hello\r\n"))
    hang = await serve(until_client_leaves(seen))
    ports = {good, wrong, expired, plain, hang}
    me = psutil.Process()

    fds_before = me.num_fds()
    results = [await check(TlsSpec("127.0.0.1", port, ca_file=certs.ca_file), ctx)
               for port in (good, wrong, expired, plain)]
    results.append(await check(TlsSpec("127.0.0.1", hang), ctx, timeout=0.2))
    results.append(await check(TlsSpec("127.0.0.1", free_port()), ctx))
    assert [r.error_kind for r in results] == [
        None, ErrorKind.TLS, ErrorKind.TLS, ErrorKind.TLS, ErrorKind.TIMEOUT, ErrorKind.CONNECT]
    await no_leaks(ports, fds_before)


# --- the DER reader -----------------------------------------------------------------------


def test_der_reader(certs: Certs) -> None:
    not_after = dt.datetime(2031, 5, 17, 8, 30, tzinfo=UTC)
    leaf = certs.ca.issue_cert("shop.example", "::1", "10.0.0.7", not_after=not_after)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    cert = parse_cert(der)
    assert cert.names == ("shop.example", "::1", "10.0.0.7")
    assert cert.not_after == cert_not_after(der) == not_after.timestamp()
    assert cert.issuer.startswith("Testing CA #") and cert.issuer.endswith("(trustme v1.2.1)")


def test_der_reader_rejects_damage_with_value_error(certs: Certs) -> None:
    der = ssl.PEM_cert_to_DER_cert(certs.ca.issue_cert("a").cert_chain_pems[0].bytes().decode())
    rng = random.Random(3)
    for cut in range(len(der)):  # bounded: every truncation once
        with pytest.raises(ValueError):
            parse_cert(der[:cut])
    for _ in range(500):  # random damage: decoded or ValueError, never another exception
        damaged = bytearray(der)
        damaged[rng.randrange(len(der))] = rng.randrange(256)
        with contextlib.suppress(ValueError):
            parse_cert(bytes(damaged))


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any], base_dir: Path) -> tuple[TlsSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[0]", errors, base_dir)
    spec = tls.parse(sec)
    sec.finish()
    return spec, errors


def test_registered() -> None:
    assert KINDS["tls"].probe is tls.probe
    assert KINDS["tls"].target(TlsSpec("::1", 993)) == "[::1]:993"


def test_parse_every_key(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not read at parse time")
    spec, errors = parse({
        "host": "mail.example", "port": 993, "server_name": "imap.example", "verify_tls": True,
        "ca_file": "ca.pem", "min_days_left": 7, "warn_days": 21,
    }, tmp_path)
    assert errors == []
    assert spec == TlsSpec("mail.example", 993, "imap.example", True, str(tmp_path / "ca.pem"),
                           7, 21)
    assert parse({"host": "shop.example"}, tmp_path) == (TlsSpec("shop.example"), [])
    # A min_days_left above the default warn_days moves the warning window with it.
    assert parse({"host": "a", "min_days_left": 40}, tmp_path)[0].warn_days == 40


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"port": 0}, "checks[0]: port: must be between 1 and 65535, got 0"),
        ({"host": "[::1]"}, "checks[0]: host: an IPv6 address goes without brackets"),
        ({"host": "shop.example:443"}, "checks[0]: host: must be a host name or address; the port"),
        ({"ca_file": "missing.pem"}, "checks[0]: ca_file: no such file"),
        ({"verify_tls": False, "ca_file": "missing.pem"},
         "checks[0]: ca_file: only used with verify_tls = true"),
        ({"min_days_left": -1}, "checks[0]: min_days_left: must be between 0 and 3650"),
        ({"min_days_left": 20, "warn_days": 10},
         "checks[0]: warn_days: must be >= min_days_left (20), got 10"),
        ({"verify_tls": "no"}, "checks[0]: verify_tls: must be true or false"),
        ({"min_days": 3}, 'checks[0]: unknown key "min_days"'),
    ],
)
def test_parse_errors(tmp_path: Path, raw: dict[str, Any], error: str) -> None:
    _, errors = parse({"host": "shop.example", **raw}, tmp_path)
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_parse_requires_host(tmp_path: Path) -> None:
    assert parse({}, tmp_path)[1] == ["checks[0]: host: is required"]
