"""The imap and pop3 probes against a real dovecot (tests/dovecot.py) on free loopback
ports, and against small asyncio servers for what dovecot would never say (garbage, a
greeting broken off, silence).

Every probe runs under `run_with_deadline`, as the scheduler runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import trustme

from agent.fields import Section
from checks import imap, pop3
from checks._mail import Endpoint
from checks._net import Tls
from checks.base import ProbeContext, run_with_deadline
from checks.imap import ImapSpec
from checks.pop3 import Pop3Spec
from checks.result import CheckResult, ErrorKind
from tests import dovecot as helper
from tests.conftest import script
from tests.dovecot import Dovecot, require_dovecot, running_dovecot
from tests.support import free_port, no_leaks

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Raw = Callable[[Handler], Awaitable[int]]


@pytest.fixture(scope="module")
def dovecot(ca: trustme.CA) -> Iterator[Dovecot]:
    with running_dovecot(ca) as d:
        d.deliver(b"From: a@example.com\r\nSubject: hello\r\n\r\nthere is one message\r\n")
        yield d


@pytest.fixture
def raw(tcp_servers: Raw) -> Raw:
    """Local TCP servers on 127.0.0.1:0 (tests/conftest.py)."""
    return tcp_servers



async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(1 << 16):
        pass
    writer.close()


def endpoint(port: int, *, tls: Tls | None = None, starttls: str = "require",
             login: Dovecot | None = None, password: str | None = None) -> Endpoint:
    tls = tls or Tls()
    return Endpoint("127.0.0.1", port, tls, "off" if tls.implicit else starttls,
                    login.user if login else None,
                    (password or login.password) if login else None)


def trusted(d: Dovecot, implicit: bool = False) -> Tls:
    return Tls(implicit=implicit, ca_file=d.ca_file)


async def run(spec: ImapSpec | Pop3Spec, ctx: ProbeContext, timeout: float = 10.0
              ) -> CheckResult:
    probe = imap.probe if isinstance(spec, ImapSpec) else pop3.probe
    return await run_with_deadline(probe, spec, ctx, timeout)


# --- imap against dovecot -----------------------------------------------------------------


async def test_imap_starttls_login_and_mailbox(dovecot: Dovecot, ctx: ProbeContext) -> None:
    spec = ImapSpec(endpoint(dovecot.imap, tls=trusted(dovecot), login=dovecot))
    result = await run(spec, ctx)
    assert result.ok, result.reason
    assert result.reason == "IMAP ok (STARTTLS, LOGIN, INBOX has 1 messages)"
    assert result.observations["messages"] == 1
    assert {"connect_s", "tls_s", "cert_days_left"} <= set(result.observations)


async def test_imap_implicit_tls(dovecot: Dovecot, ctx: ProbeContext) -> None:
    spec = ImapSpec(endpoint(dovecot.imaps, tls=trusted(dovecot, True), login=dovecot))
    result = await run(spec, ctx)
    assert result.ok, result.reason
    assert result.reason == "IMAP ok (TLS, LOGIN, INBOX has 1 messages)"


async def test_imap_without_login(dovecot: Dovecot, ctx: ProbeContext) -> None:
    result = await run(ImapSpec(endpoint(dovecot.imap, tls=trusted(dovecot))), ctx)
    assert result.ok, result.reason
    assert result.reason == "IMAP ok (STARTTLS)"


async def test_imap_login_refused(dovecot: Dovecot, ctx: ProbeContext) -> None:
    wrong = "wrong-" + dovecot.password
    spec = ImapSpec(endpoint(dovecot.imap, tls=trusted(dovecot), login=dovecot, password=wrong))
    result = await run(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "IMAP LOGIN refused: [AUTHENTICATIONFAILED] Authentication failed."


async def test_imap_mailbox_missing(dovecot: Dovecot, ctx: ProbeContext) -> None:
    spec = ImapSpec(endpoint(dovecot.imap, tls=trusted(dovecot), login=dovecot), "Archive 2019")
    result = await run(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason.startswith(
        'IMAP EXAMINE "Archive 2019" refused: Mailbox doesn\'t exist: Archive 2019'), result.reason


async def test_imap_certificate_not_trusted(dovecot: Dovecot, ctx: ProbeContext) -> None:
    result = await run(ImapSpec(endpoint(dovecot.imap, login=dovecot)), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == (f"TLS certificate of 127.0.0.1:{dovecot.imap} not trusted: "
                             "unable to get local issuer certificate")


async def test_imap_name_mismatch(dovecot: Dovecot, ctx: ProbeContext) -> None:
    tls = Tls(ca_file=dovecot.ca_file, server_name="imap.example.com")
    result = await run(ImapSpec(endpoint(dovecot.imap, tls=tls)), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert "Hostname mismatch" in result.reason and "imap.example.com" in result.reason


async def test_imap_tls_to_the_plaintext_port(dovecot: Dovecot, ctx: ProbeContext) -> None:
    result = await run(ImapSpec(endpoint(dovecot.imap, tls=trusted(dovecot, True))), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason == (f"TLS handshake with 127.0.0.1:{dovecot.imap} failed: "
                             "wrong version number")


async def test_imap_login_in_clear_only_when_asked(dovecot: Dovecot, ctx: ProbeContext) -> None:
    result = await run(ImapSpec(endpoint(dovecot.imap, starttls="off", login=dovecot)), ctx)
    assert result.ok, result.reason
    assert result.reason == "IMAP ok (LOGIN, INBOX has 1 messages)"


async def test_imap_refused(ctx: ProbeContext) -> None:
    port = free_port()
    result = await run(ImapSpec(endpoint(port)), ctx)
    assert (result.error_kind, result.reason) == (ErrorKind.CONNECT,
                                                  f"connection refused by 127.0.0.1:{port}")


async def test_imap_silence_is_a_timeout(raw: Raw, ctx: ProbeContext) -> None:
    port = await raw(silent)
    result = await asyncio.wait_for(run(ImapSpec(endpoint(port)), ctx, 0.3), 5)
    assert result.error_kind is ErrorKind.TIMEOUT


GREETING = b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"


@pytest.mark.parametrize(
    ("answers", "starttls", "kind", "reason"),
    [
        ((b"HTTP/1.0 400 Bad Request\r\n",), "require", ErrorKind.PROTOCOL,
         "IMAP server sent b'HTTP/1.0 400 Bad Request' instead of a greeting"),
        ((b"* OK [CAPABILITY IMAP4rev1] Dove",), "require", ErrorKind.PROTOCOL,
         "IMAP server hung up in the middle of the greeting: b'* OK [CAPABILITY IMAP4rev1] Dove'"),
        ((b"* BYE Too many connections from your IP\r\n",), "require", ErrorKind.ASSERTION,
         "IMAP server refused the connection: Too many connections from your IP"),
        ((GREETING, b"* CAPABILITY IMAP4rev1\r\nW1 OK done\r\n"), "require", ErrorKind.ASSERTION,
         "IMAP server does not offer STARTTLS"),
        ((GREETING, b"* CAPABILITY IMAP4rev1 STARTTLS\r\nW1 OK done\r\n",
          b"W2 NO [UNAVAILABLE] TLS is off today\r\n"), "require", ErrorKind.ASSERTION,
         "IMAP STARTTLS refused: [UNAVAILABLE] TLS is off today"),
        ((GREETING, b"W1 BAD what?\r\n"), "require", ErrorKind.PROTOCOL,
         "IMAP server answered BAD to CAPABILITY: what?"),
        ((GREETING, b"* BYE shutting down\r\n"), "require", ErrorKind.ASSERTION,
         "IMAP server said BYE to CAPABILITY: shutting down"),
        ((GREETING, b"W7 OK not yours\r\n"), "require", ErrorKind.PROTOCOL,
         "IMAP server sent b'W7 OK not yours' instead of the answer to CAPABILITY"),
        ((GREETING, b""), "require", ErrorKind.PROTOCOL,
         "IMAP server hung up before sending the answer to CAPABILITY"),
        ((GREETING, b"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\nW1 OK done\r\n"), "off",
         ErrorKind.ASSERTION, "IMAP server disables LOGIN (LOGINDISABLED)"),
        ((GREETING, b"* CAPABILITY IMAP4rev1\r\nW1 OK done\r\n"), "optional",
         ErrorKind.ASSERTION, "IMAP server offers no TLS; not sending the password in clear "
                              '(starttls = "off" allows it)'),
        ((GREETING, b"* " + b"x" * 9000 + b"\r\n"), "require", ErrorKind.PROTOCOL,
         "IMAP server sent a line longer than 8192 bytes in the answer to CAPABILITY"),
        ((GREETING, b"* XX {999999}\r\n"), "require", ErrorKind.PROTOCOL,
         "IMAP server sent a 999999-byte literal in the answer to CAPABILITY (more than 65536)"),
        ((GREETING, b"* OK\r\n" * 1001), "require", ErrorKind.PROTOCOL,
         "IMAP server sent more than 1000 lines in the answer to CAPABILITY"),
    ],
)
async def test_imap_wrong_answers(raw: Raw, ctx: ProbeContext, answers: tuple[bytes, ...],
                                  starttls: str, kind: ErrorKind, reason: str) -> None:
    port = await raw(script(*answers, linger=answers[-1].endswith(b"\n")))
    spec = ImapSpec(Endpoint("127.0.0.1", port, Tls(), starttls, "probe", "s3cret"))
    result = await run(spec, ctx)
    assert (result.error_kind, result.reason) == (kind, reason)


async def test_imap_literals_are_spliced(raw: Raw, ctx: ProbeContext) -> None:
    port = await raw(script(b"* OK hi\r\n", b"* CAPABILITY {8}\r\nIMAP4rev1 STARTTLS\r\n"
                                            b"W1 OK done\r\n", b"W2 NO [X] no TLS here\r\n"))
    result = await run(ImapSpec(endpoint(port)), ctx)
    assert result.reason == "IMAP STARTTLS refused: [X] no TLS here"


def test_mailbox_names_in_modified_utf7() -> None:
    assert imap.mailbox_name("INBOX") == "INBOX"
    assert imap.mailbox_name("Entwürfe") == "Entw&APw-rfe"
    assert imap.mailbox_name("A&B") == "A&-B"
    assert imap.mailbox_name("台北") == "&U,BTFw-"


# --- pop3 against dovecot -----------------------------------------------------------------


async def test_pop3_stls_and_login(dovecot: Dovecot, ctx: ProbeContext) -> None:
    result = await run(Pop3Spec(endpoint(dovecot.pop3, tls=trusted(dovecot), login=dovecot)), ctx)
    assert result.ok, result.reason
    assert result.reason == "POP3 ok (STLS, login, 1 messages)"
    assert result.observations["messages"] == 1


async def test_pop3_implicit_tls(dovecot: Dovecot, ctx: ProbeContext) -> None:
    spec = Pop3Spec(endpoint(dovecot.pop3s, tls=trusted(dovecot, True), login=dovecot))
    result = await run(spec, ctx)
    assert result.ok, result.reason
    assert result.reason == "POP3 ok (TLS, login, 1 messages)"


async def test_pop3_login_refused(dovecot: Dovecot, ctx: ProbeContext) -> None:
    wrong = "wrong-" + dovecot.password
    spec = Pop3Spec(endpoint(dovecot.pop3, tls=trusted(dovecot), login=dovecot, password=wrong))
    result = await run(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "POP3 login refused: -ERR [AUTH] Authentication failed."
    assert wrong not in result.reason


async def test_pop3_certificate_not_trusted(dovecot: Dovecot, ctx: ProbeContext) -> None:
    result = await run(Pop3Spec(endpoint(dovecot.pop3s, tls=Tls(implicit=True))), ctx)
    assert result.error_kind is ErrorKind.TLS
    assert result.reason.startswith(f"TLS certificate of 127.0.0.1:{dovecot.pop3s} not trusted")


async def test_pop3_refused_and_timeout(raw: Raw, ctx: ProbeContext) -> None:
    port = free_port()
    refused = await run(Pop3Spec(endpoint(port)), ctx)
    assert (refused.error_kind, refused.reason) == (ErrorKind.CONNECT,
                                                    f"connection refused by 127.0.0.1:{port}")
    port = await raw(silent)
    hung = await asyncio.wait_for(run(Pop3Spec(endpoint(port)), ctx, 0.3), 5)
    assert hung.error_kind is ErrorKind.TIMEOUT


@pytest.mark.parametrize(
    ("answers", "kind", "reason"),
    [
        ((b"-ERR [SYS/TEMP] Maintenance\r\n",), ErrorKind.ASSERTION,
         "POP3 server refused the connection: -ERR [SYS/TEMP] Maintenance"),
        ((b"SSH-2.0-OpenSSH_9.2\r\n",), ErrorKind.PROTOCOL,
         "POP3 server sent b'SSH-2.0-OpenSSH_9.2\\r\\n' instead of the greeting"),
        ((b"+OK ready\r\n", b"+OK\r\nUSER\r\n"), ErrorKind.PROTOCOL,
         "POP3 server hung up before sending the end of the CAPA list"),
        ((b"+OK ready\r\n", b"+OK\r\nUSER\r\n.\r\n"), ErrorKind.ASSERTION,
         "POP3 server does not offer STLS"),
        ((b"+OK ready\r\n", b"-ERR unknown command\r\n"), ErrorKind.ASSERTION,
         "POP3 server does not offer STLS"),
        ((b"+OK ready\r\n", b"+OK\r\nSTLS\r\n.\r\n", b"-ERR not now\r\n"), ErrorKind.ASSERTION,
         "POP3 STLS refused: -ERR not now"),
        ((b"+OK ready\r\n", b"+OK\r\n" + b"X\r\n" * 201), ErrorKind.PROTOCOL,
         "POP3 server sent more than 200 lines in the answer to CAPA"),
    ],
)
async def test_pop3_wrong_answers(raw: Raw, ctx: ProbeContext, answers: tuple[bytes, ...],
                                  kind: ErrorKind, reason: str) -> None:
    truncated = answers[-1].endswith(b"USER\r\n")  # the CAPA list broken off: hang up
    port = await raw(script(*answers, linger=not truncated))
    result = await run(Pop3Spec(endpoint(port)), ctx)
    assert (result.error_kind, result.reason) == (kind, reason)


# --- leaks --------------------------------------------------------------------------------


async def test_no_leaked_sockets(dovecot: Dovecot, raw: Raw, ctx: ProbeContext) -> None:
    garbage = await raw(script(b"HTTP/1.0 400 Bad Request\r\n"))
    hush = await raw(silent)
    me = psutil.Process()
    ports = {dovecot.imap, dovecot.imaps, dovecot.pop3, dovecot.pop3s, garbage, hush}
    specs: list[tuple[ImapSpec | Pop3Spec, float]] = [
        (ImapSpec(endpoint(dovecot.imap, tls=trusted(dovecot), login=dovecot)), 10.0),
        (ImapSpec(endpoint(dovecot.imaps, tls=trusted(dovecot, True), login=dovecot)), 10.0),
        (ImapSpec(endpoint(dovecot.imap, tls=trusted(dovecot, True))), 10.0),
        (ImapSpec(endpoint(dovecot.imap)), 10.0),
        (Pop3Spec(endpoint(dovecot.pop3, tls=trusted(dovecot), login=dovecot,
                           password="wrong")), 10.0),
        (Pop3Spec(endpoint(dovecot.pop3s, tls=trusted(dovecot, True))), 10.0),
        (ImapSpec(endpoint(garbage)), 10.0),
        (Pop3Spec(endpoint(hush)), 0.1),
    ]
    fds_before = me.num_fds()
    kinds = [(await run(spec, ctx, timeout)).error_kind
             for _ in range(3) for spec, timeout in specs]
    assert kinds[:8] == [None, None, ErrorKind.TLS, ErrorKind.TLS, ErrorKind.ASSERTION, None,
                         ErrorKind.PROTOCOL, ErrorKind.TIMEOUT]

    await no_leaks(ports, fds_before)


# --- the fixture itself -------------------------------------------------------------------


def test_missing_dovecot_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setattr(helper, "DOVECOT", "/nonexistent/sbin/dovecot")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"dovecot is not installed .* \.ci/run"):
        require_dovecot()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install dovecot-imapd"):
        require_dovecot()


# --- config -------------------------------------------------------------------------------


def parse(kind: Any, raw: dict[str, Any]) -> tuple[Any, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[1]", errors, Path("."))
    spec = kind.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_imap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAP_PASSWORD", "s3cret")
    spec, errors = parse(imap, {"host": "mail.example.com", "username": "u",
                                "password": "${IMAP_PASSWORD}", "mailbox": "Monitoring"})
    assert errors == []
    assert spec == ImapSpec(Endpoint("mail.example.com", 143, Tls(), "require", "u", "s3cret"),
                            "Monitoring")
    assert imap.target(spec) == "mail.example.com:143"
    implicit, errors = parse(imap, {"host": "::1", "tls": True})
    assert errors == [] and imap.target(implicit) == "[::1]:993"
    assert implicit.server.starttls == "off" and implicit.mailbox == "INBOX"


def test_parse_pop3(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    spec, errors = parse(pop3, {"host": "mail.example.com", "tls": True, "username": "u",
                                "password_file": str(secret), "verify_tls": False})
    assert errors == []
    assert spec == Pop3Spec(Endpoint("mail.example.com", 995, Tls(True, None, False), "off",
                                     "u", "s3cret"))
    assert "s3cret" not in repr(spec)


@pytest.mark.parametrize(
    ("kind", "raw", "error"),
    [
        (imap, {"host": "mx", "mailbox": "INBOX"}, "checks[1]: mailbox: needs username"),
        (imap, {"host": "mx", "port": 0}, "checks[1]: port: must be between 1 and 65535"),
        (pop3, {"host": "mx", "tls": True, "starttls": "off"}, "checks[1]: starttls: not used"),
        (pop3, {"host": "mx", "mailbox": "INBOX"}, 'checks[1]: unknown key "mailbox"'),
        (pop3, {"host": "mx", "username": "u", "password": "a", "password_file": "f"},
         "checks[1]: password: give either password or password_file, not both"),
    ],
)
def test_parse_errors(kind: Any, raw: dict[str, Any], error: str) -> None:
    _, errors = parse(kind, raw)
    assert len(errors) == 1 and errors[0].startswith(error), errors
