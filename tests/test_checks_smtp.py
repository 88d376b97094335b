"""The smtp probe against a real aiosmtpd on 127.0.0.1 port 0 (STARTTLS, implicit TLS,
AUTH, RCPT), and against small asyncio servers for what aiosmtpd would never say
(a 421 to EHLO, garbage, a banner broken off).

Every probe runs under `run_with_deadline`, as the scheduler runs it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.fields import Section
from checks import smtp
from checks._mail import Endpoint
from checks._net import Tls
from checks.base import ProbeContext, run_with_deadline
from checks.result import CheckResult, ErrorKind
from checks.smtp import SmtpSpec
from tests.conftest import script
from tests.support import LocalCerts, Mailbox, free_port, local_certs, no_leaks

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

USER, PASSWORD = "probe@example.com", 'pä"ss wörd\\1'
KNOWN = "info@example.com"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LocalCerts:
    return local_certs(tmp_path_factory.mktemp("smtp-ca"), days=30)


Start = Callable[..., Awaitable[int]]


@pytest.fixture
def smtpd(smtp_servers: Start) -> Start:
    """aiosmtpd (tests/conftest.py) knowing one recipient and accepting USER's login."""

    async def start(handler: Any = None, **options: Any) -> int:
        return await smtp_servers(handler or Mailbox(known={KNOWN}), login_as=(USER, PASSWORD),
                                  **options)

    return start


@pytest.fixture
def raw(tcp_servers: Callable[[Handler], Awaitable[int]]) -> Callable[[Handler], Awaitable[int]]:
    """Local TCP servers on 127.0.0.1:0 (tests/conftest.py)."""
    return tcp_servers



def spec(port: int, *, tls: Tls | None = None, starttls: str = "require", login: bool = False,
         password: str = PASSWORD, rcpt: str | None = None) -> SmtpSpec:
    tls = tls or Tls()
    server = Endpoint("127.0.0.1", port, tls, "off" if tls.implicit else starttls,
                      USER if login else None, password if login else None)
    return SmtpSpec(server, "probe.test", rcpt)


async def check(s: SmtpSpec, ctx: ProbeContext, timeout: float = 10.0) -> CheckResult:
    return await run_with_deadline(smtp.probe, s, ctx, timeout)


# --- passing ------------------------------------------------------------------------------


async def test_starttls_auth_and_rcpt(smtpd: Start, ctx: ProbeContext, certs: LocalCerts) -> None:
    box = Mailbox()
    port = await smtpd(box, starttls=certs.server)
    result = await check(spec(port, tls=Tls(ca_file=certs.ca_file), login=True, rcpt=KNOWN), ctx)
    assert result.ok, result.reason
    assert result.reason == "SMTP ok (STARTTLS, AUTH, accepts mail for info@example.com)"
    assert {"connect_s", "banner_s", "tls_s"} <= set(result.observations)
    assert 29 < result.observations["cert_days_left"] <= 30
    assert box.messages == []  # RCPT without DATA: nothing was sent


async def test_auth_login_when_plain_is_not_offered(smtpd: Start, ctx: ProbeContext,
                                                    certs: LocalCerts) -> None:
    port = await smtpd(starttls=certs.server, auth_exclude_mechanism=["PLAIN"])
    result = await check(spec(port, tls=Tls(ca_file=certs.ca_file), login=True), ctx)
    assert result.ok, result.reason
    assert result.reason == "SMTP ok (STARTTLS, AUTH)"


async def test_implicit_tls(smtpd: Start, ctx: ProbeContext, certs: LocalCerts) -> None:
    # aiosmtpd does not see that a listener's TLS is TLS: let it offer AUTH anyway.
    port = await smtpd(implicit=certs.server, auth_require_tls=False)
    result = await check(spec(port, tls=Tls(implicit=True, ca_file=certs.ca_file), login=True),
                         ctx)
    assert result.ok, result.reason
    assert result.reason == "SMTP ok (TLS, AUTH)"


async def test_plain_server_with_optional_starttls(smtpd: Start, ctx: ProbeContext) -> None:
    port = await smtpd()
    result = await check(spec(port, starttls="optional", rcpt=KNOWN), ctx)
    assert result.ok, result.reason
    assert result.reason == "SMTP ok (accepts mail for info@example.com)"


# --- failing ------------------------------------------------------------------------------


async def test_refused(ctx: ProbeContext) -> None:
    port = free_port()
    result = await check(spec(port), ctx)
    assert result.error_kind is ErrorKind.CONNECT
    assert result.reason == f"connection refused by 127.0.0.1:{port}"


async def test_silent_server_is_a_timeout(raw: Any, ctx: ProbeContext) -> None:
    port = await raw(silent)
    result = await asyncio.wait_for(run_with_deadline(smtp.probe, spec(port), ctx, 0.3), 5)
    assert result.error_kind is ErrorKind.TIMEOUT
    assert result.reason == "no complete answer within 0.3s"


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(1 << 16):  # bounded: the client sends a finite amount
        pass
    writer.close()


@pytest.mark.parametrize(
    ("lines", "kind", "reason"),
    [
        ((b"554 5.3.2 no service here\r\n",), ErrorKind.ASSERTION,
         "SMTP server greeted with 554 instead of 220: 5.3.2 no service here"),
        ((b"220 mx.test ESMTP\r\n", b"421 4.3.2 Service shutting down\r\n"), ErrorKind.ASSERTION,
         "SMTP server answered 421 to EHLO: 4.3.2 Service shutting down"),
        ((b"220 mx.test ESMTP\r\n", b"250-mx.test\r\n250 PIPELINING\r\n"), ErrorKind.ASSERTION,
         "SMTP server does not offer STARTTLS"),
        ((b"220 mx.test ESMTP\r\n", b"250-mx.test\r\n250 STARTTLS\r\n",
          b"454 4.7.0 TLS not available due to local problem\r\n"), ErrorKind.ASSERTION,
         "SMTP server answered 454 to STARTTLS: 4.7.0 TLS not available due to local problem"),
        ((b"220 mx.test ESMTP\r\n", b"250-mx.test\r\n250 STARTTLS\r\n",
          b"220 go ahead\r\n250 injected\r\n"), ErrorKind.PROTOCOL,
         "SMTP server sent b'250 injected\\r\\n' before TLS started: not upgrading a "
         "connection with unread plaintext"),
        ((b"HTTP/1.1 400 Bad Request\r\n",), ErrorKind.PROTOCOL,
         "SMTP server sent b'HTTP/1.1 400 Bad Request\\r\\n' instead of the banner"),
        ((b"220-mx.test ESMTP\r\n250 mixed codes\r\n",), ErrorKind.PROTOCOL,
         "SMTP server sent b'250 mixed codes\\r\\n' instead of the banner"),
        ((b"220-mx.test ESMTP\r\n220-more",), ErrorKind.PROTOCOL,
         "SMTP server hung up in the middle of the banner: b'220-more'"),
        ((b"220 mx.test ESMTP\r\n", b""), ErrorKind.PROTOCOL,
         "SMTP server hung up before sending the answer to EHLO"),
        ((b"220 " + b"x" * 9000 + b"\r\n",), ErrorKind.PROTOCOL,
         "SMTP server sent a line longer than 8192 bytes in the banner"),
    ],
)
async def test_wrong_answers(raw: Any, ctx: ProbeContext, lines: tuple[bytes, ...],
                             kind: ErrorKind, reason: str) -> None:
    port = await raw(script(*lines, linger=len(lines) > 1 or lines[0].endswith(b"\n")))
    result = await check(spec(port), ctx)
    assert (result.error_kind, result.reason) == (kind, reason)


async def test_endless_reply_is_bounded(raw: Any, ctx: ProbeContext) -> None:
    port = await raw(script(b"220-mx.test\r\n" * 200 + b"220 ok\r\n"))
    result = await check(spec(port), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == "SMTP server sent more than 100 lines in the banner"


async def test_starttls_required_but_not_offered(smtpd: Start, ctx: ProbeContext) -> None:
    port = await smtpd()
    result = await check(spec(port), ctx)
    assert (result.error_kind, result.reason) == (ErrorKind.ASSERTION,
                                                  "SMTP server does not offer STARTTLS")


async def test_no_password_in_clear(smtpd: Start, ctx: ProbeContext) -> None:
    port = await smtpd(auth_require_tls=False)
    result = await check(spec(port, starttls="optional", login=True), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == ("SMTP server offers no TLS; not sending the password in clear "
                             '(starttls = "off" allows it)')
    assert (await check(spec(port, starttls="off", login=True), ctx)).ok


async def test_auth_refused(smtpd: Start, ctx: ProbeContext, certs: LocalCerts) -> None:
    port = await smtpd(starttls=certs.server)
    wrong = "not-" + PASSWORD
    result = await check(spec(port, tls=Tls(ca_file=certs.ca_file), login=True, password=wrong),
                         ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "SMTP AUTH refused: 535 5.7.8 Authentication credentials invalid"


async def test_auth_not_offered(raw: Any, ctx: ProbeContext) -> None:
    port = await raw(script(b"220 mx.test\r\n", b"250-mx.test\r\n250 AUTH CRAM-MD5\r\n"))
    result = await check(spec(port, starttls="off", login=True), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "SMTP server offers no AUTH PLAIN or LOGIN (it offers CRAM-MD5)"


async def test_password_never_in_a_reason(raw: Any, ctx: ProbeContext) -> None:
    """A server that quotes back what it got (plain and as the AUTH PLAIN blob)."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await reader.readline()
        writer.write(b"250-mx.test\r\n250 AUTH PLAIN\r\n")
        line = (await reader.readline()).strip()
        writer.write(b"535 bad: " + line + b" " + PASSWORD.encode() + b"\r\n")
        await reader.read()
        writer.close()

    port = await raw(echo)
    result = await check(spec(port, starttls="off", login=True), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "SMTP AUTH refused: 535 bad: AUTH PLAIN *** ***"


async def test_rcpt_refused(smtpd: Start, ctx: ProbeContext) -> None:
    port = await smtpd()
    result = await check(spec(port, starttls="off", rcpt="nobody@example.com"), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == ("SMTP server refused RCPT TO:<nobody@example.com>: 550 5.1.1 "
                             "<nobody@example.com>: Recipient address rejected: User unknown")


async def test_starttls_certificate_not_trusted(smtpd: Start, ctx: ProbeContext,
                                                certs: LocalCerts) -> None:
    port = await smtpd(starttls=certs.server)
    result = await check(spec(port), ctx)  # the system store does not know the test CA
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == (f"TLS certificate of 127.0.0.1:{port} not trusted: "
                             "unable to get local issuer certificate")


async def test_implicit_tls_to_a_plaintext_server(smtpd: Start, ctx: ProbeContext,
                                                  certs: LocalCerts) -> None:
    port = await smtpd()
    result = await check(spec(port, tls=Tls(implicit=True, ca_file=certs.ca_file)), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason.startswith(f"TLS handshake with 127.0.0.1:{port} failed: ")


async def test_no_leaked_sockets(smtpd: Start, raw: Any, ctx: ProbeContext, certs: LocalCerts
                                 ) -> None:
    ports = {
        "starttls": await smtpd(starttls=certs.server),
        "implicit": await smtpd(implicit=certs.server),
        "plain": await smtpd(),
        "garbage": await raw(script(b"HTTP/1.1 400 Bad Request\r\n")),
        "silent": await raw(silent),
    }
    me = psutil.Process()
    trusted = Tls(ca_file=certs.ca_file)
    fds_before = me.num_fds()
    kinds = []
    for _ in range(3):
        for s, timeout in [
            (spec(ports["starttls"], tls=trusted, login=True, rcpt=KNOWN), 10.0),
            (spec(ports["starttls"]), 10.0),
            (spec(ports["implicit"], tls=Tls(implicit=True, ca_file=certs.ca_file)), 10.0),
            (spec(ports["plain"], tls=Tls(implicit=True, ca_file=certs.ca_file)), 10.0),
            (spec(ports["plain"], starttls="off", rcpt="x@example.com"), 10.0),
            (spec(ports["garbage"]), 10.0),
            (spec(ports["silent"]), 0.1),
        ]:
            kinds.append((await check(s, ctx, timeout)).error_kind)
    assert kinds[:7] == [None, ErrorKind.TLS, None, ErrorKind.TLS, ErrorKind.ASSERTION,
                         ErrorKind.PROTOCOL, ErrorKind.TIMEOUT]
    await no_leaks(ports.values(), fds_before)


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any], base: Path = Path(".")) -> tuple[SmtpSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[1]", errors, base)
    result = smtp.parse(sec)
    sec.finish()
    return result, errors


def test_parse_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ca.pem").write_text("-")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    got, errors = parse({"host": "mail.example.com", "port": 587, "starttls": "optional",
                         "verify_tls": False, "ca_file": "ca.pem", "server_name": "mx",
                         "username": USER, "password": "${SMTP_PASSWORD}", "helo": "pos.shop",
                         "rcpt": KNOWN, "mail_from": "monitor@example.com"}, tmp_path)
    assert errors == []
    tls = Tls(False, str(tmp_path / "ca.pem"), False, "mx")
    assert got == SmtpSpec(Endpoint("mail.example.com", 587, tls, "optional", USER, PASSWORD),
                           "pos.shop", KNOWN, "monitor@example.com")
    assert PASSWORD not in repr(got)
    assert smtp.target(got) == "mail.example.com:587"


def test_parse_defaults() -> None:
    got, errors = parse({"host": "mx.example.com"})
    assert errors == []
    assert (got.server.port, got.server.starttls, got.rcpt, got.mail_from) == (25, "require",
                                                                             None, "")
    assert got.helo == socket.gethostname()
    implicit, errors = parse({"host": "mx.example.com", "tls": True})
    assert errors == [] and (implicit.server.port, implicit.server.starttls) == (465, "off")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"host": "mx", "tls": True, "starttls": "require"},
         "checks[1]: starttls: not used with tls = true"),
        ({"host": "mx", "starttls": "yes"},
         'checks[1]: starttls: must be one of require, optional, off; got "yes"'),
        ({"host": "mx", "username": USER},
         "checks[1]: password: username and password go together"),
        ({"host": "mx", "password": PASSWORD},
         "checks[1]: username: username and password go together"),
        ({"host": "mx", "username": USER, "password": "${NO_SUCH_VARIABLE_HERE}"},
         "checks[1]: password: environment variable NO_SUCH_VARIABLE_HERE is not set"),
        ({"host": "mx", "username": USER, "password": "a\nb"},
         "checks[1]: password: must not contain line breaks"),
        ({"host": "mx", "rcpt": "info"},
         "checks[1]: rcpt: must be a mail address like info@example.com, got 'info'"),
        ({"host": "mx", "mail_from": "a@example.com"},
         "checks[1]: mail_from: only used together with rcpt"),
        ({"host": "mx", "helo": "two words"},
         "checks[1]: helo: must be a host name or address literal"),
        ({"host": "mx", "rcpt_to": KNOWN}, 'checks[1]: unknown key "rcpt_to"'),
    ],
)
def test_parse_errors(raw: dict[str, Any], error: str) -> None:
    _, errors = parse(raw)
    assert len(errors) == 1 and errors[0].startswith(error), errors
    assert PASSWORD not in errors[0]
