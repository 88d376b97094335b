"""The mail round trip: aiosmtpd (STARTTLS, AUTH) delivering into a real dovecot's
Maildir, the probe finding the message through dovecot's IMAP and deleting it.

Every probe runs under `run_with_deadline`, as the scheduler runs it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import trustme

from agent.fields import Section
from checks import mailflow
from checks._mail import Endpoint
from checks._net import Tls
from checks.base import ProbeContext, run_with_deadline
from checks.mailflow import MailflowSpec
from checks.result import CheckResult, ErrorKind
from tests.conftest import Serve
from tests.dovecot import Dovecot, running_dovecot
from tests.support import Mailbox, free_port, no_leaks

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

SENDER, RCPT = "monitor@example.com", "probe@example.com"
SMTP_USER, SMTP_PASSWORD = "monitor", "smtp-s3cret"


@pytest.fixture(scope="module")
def dovecot(ca: trustme.CA) -> Iterator[Dovecot]:
    with running_dovecot(ca) as d:
        yield d


@pytest.fixture
def relay(dovecot: Dovecot) -> Mailbox:
    """aiosmtpd's handler: delivers what it accepts into the dovecot user's Maildir (unless
    `drop`), as an MDA would."""
    return Mailbox(known={RCPT}, deliver=dovecot.deliver)


@pytest.fixture
async def smtp_port(relay: Mailbox, ca: trustme.CA, smtp_servers: Serve) -> int:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return await smtp_servers(relay, starttls=context, login_as=(SMTP_USER, SMTP_PASSWORD),
                              hostname="relay.test")


@pytest.fixture
def raw(tcp_servers: Serve) -> Callable[[bytes], Awaitable[int]]:
    """A server (tests/conftest.py) that sends `greeting` (b"": nothing) and waits for the
    client to leave."""

    async def start(greeting: bytes) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(greeting)
            while await reader.read(1 << 16):  # bounded: the client sends a finite amount
                pass
            writer.close()

        return await tcp_servers(handle)

    return start


def spec(d: Dovecot, smtp_port: int, *, imap_port: int | None = None, rcpt: str = RCPT,
         mailbox: str = "INBOX", smtp_password: str = SMTP_PASSWORD,
         imap_password: str | None = None, imap_tls: Tls | None = None, wait: float = 5.0,
         poll: float = 0.1) -> MailflowSpec:
    out = Endpoint("127.0.0.1", smtp_port, Tls(ca_file=d.ca_file), "require", SMTP_USER,
                   smtp_password)
    inbound = Endpoint("127.0.0.1", imap_port or d.imap, imap_tls or Tls(ca_file=d.ca_file),
                       "require", d.user, imap_password or d.password)
    return MailflowSpec(out, "probe.test", inbound, mailbox, SENDER, rcpt, wait, poll)


async def check(s: MailflowSpec, ctx: ProbeContext, timeout: float = 15.0) -> CheckResult:
    return await run_with_deadline(mailflow.probe, s, ctx, timeout)


def mail_files(d: Dovecot) -> list[Path]:
    return [p for sub in ("new", "cur") for p in (d.maildir / sub).iterdir()]


# --- passing ------------------------------------------------------------------------------


async def test_round_trip(dovecot: Dovecot, relay: Mailbox, smtp_port: int, ctx: ProbeContext
                          ) -> None:
    s = spec(dovecot, smtp_port)
    result = await check(s, ctx)
    assert result.ok, result.reason
    assert result.reason.startswith("mail went through in ")
    assert result.reason.endswith("s (probe@example.com in INBOX)")
    obs = result.observations
    assert obs["searches"] >= 1 and obs["stale_deleted"] == 0
    assert result.latency_s >= obs["submit_s"] + obs["deliver_s"]
    [sent] = relay.messages
    assert f"X-Onwatch-Probe: {s.tag_prefix}-".encode() in sent
    assert b"Subject: onwatch mail round trip [onwatch-" in sent
    assert mail_files(dovecot) == []  # found, then deleted


async def test_leftovers_of_earlier_runs_are_deleted(dovecot: Dovecot, smtp_port: int,
                                                     ctx: ProbeContext) -> None:
    s = spec(dovecot, smtp_port)
    other = f"{mailflow.HEADER}: onwatch-0123456789ab-feedface"  # another check's message
    for header in (f"{mailflow.HEADER}: {s.tag_prefix}-late1",
                   f"{mailflow.HEADER}: {s.tag_prefix}-late2", other):
        dovecot.deliver(f"Subject: late\r\n{header}\r\n\r\narrived too late\r\n".encode())
    result = await check(s, ctx)
    assert result.ok, result.reason
    assert result.observations["stale_deleted"] == 2
    [kept] = mail_files(dovecot)
    assert other.encode() in kept.read_bytes()
    kept.unlink()


# --- failing ------------------------------------------------------------------------------


async def test_not_found_in_time(dovecot: Dovecot, relay: Mailbox, smtp_port: int,
                                 ctx: ProbeContext) -> None:
    relay.drop = True  # accepted, never delivered: the outage this kind exists for
    result = await check(spec(dovecot, smtp_port, wait=0.5, poll=0.1), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == "test message not found in INBOX within 0.5s (6 searches)"
    assert result.observations["searches"] == 6


async def test_deadline_before_the_message_arrives(dovecot: Dovecot, relay: Mailbox,
                                                   smtp_port: int, ctx: ProbeContext) -> None:
    relay.drop = True
    result = await check(spec(dovecot, smtp_port, wait=30, poll=0.1), ctx, timeout=0.8)
    assert result.error_kind is ErrorKind.TIMEOUT
    assert result.reason == "no complete answer within 0.8s"


@pytest.mark.parametrize(
    ("change", "kind", "reason"),
    [
        ({"rcpt": "nobody@example.com"}, ErrorKind.ASSERTION,
         "cannot send the test message: SMTP server refused RCPT TO:<nobody@example.com>: "
         "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"),
        ({"smtp_password": "wrong"}, ErrorKind.ASSERTION,
         "cannot send the test message: SMTP AUTH refused: "
         "535 5.7.8 Authentication credentials invalid"),
        ({"imap_password": "wrong"}, ErrorKind.ASSERTION,
         "cannot read the mailbox: IMAP LOGIN refused: [AUTHENTICATIONFAILED] "
         "Authentication failed."),
        ({"mailbox": "Monitoring"}, ErrorKind.ASSERTION,
         "cannot read the mailbox: IMAP SELECT \"Monitoring\" refused: "
         "Mailbox doesn't exist: Monitoring"),
        ({"imap_tls": Tls()}, ErrorKind.TLS,
         "cannot read the mailbox: TLS certificate of 127.0.0.1:{imap} not trusted: "
         "unable to get local issuer certificate"),
    ],
)
async def test_refusals(dovecot: Dovecot, relay: Mailbox, smtp_port: int, ctx: ProbeContext,
                        change: dict[str, Any], kind: ErrorKind, reason: str) -> None:
    result = await check(spec(dovecot, smtp_port, **change), ctx)
    assert result.error_kind is kind
    assert result.reason.startswith(reason.format(imap=dovecot.imap)), result.reason
    assert "wrong" not in result.reason and SMTP_PASSWORD not in result.reason
    if "rcpt" in change or "smtp_password" in change:
        assert relay.messages == []


async def test_connection_failures(dovecot: Dovecot, smtp_port: int, raw: Any,
                                   ctx: ProbeContext) -> None:
    nothing = free_port()
    result = await check(spec(dovecot, nothing), ctx)
    assert (result.error_kind, result.reason) == (
        ErrorKind.CONNECT,
        f"cannot send the test message: connection refused by 127.0.0.1:{nothing}")
    result = await check(spec(dovecot, smtp_port, imap_port=nothing), ctx)
    assert (result.error_kind, result.reason) == (
        ErrorKind.CONNECT, f"cannot read the mailbox: connection refused by 127.0.0.1:{nothing}")
    garbage = await raw(b"+OK POP3 ready\r\n")
    result = await check(spec(dovecot, garbage), ctx)
    assert (result.error_kind, result.reason) == (
        ErrorKind.PROTOCOL,
        "cannot send the test message: SMTP server sent b'+OK POP3 ready\\r\\n' instead of "
        "the banner")
    silent = await raw(b"")
    result = await check(spec(dovecot, silent), ctx, timeout=0.5)
    assert result.error_kind is ErrorKind.TIMEOUT


async def test_no_leaked_sockets(dovecot: Dovecot, relay: Mailbox, smtp_port: int, raw: Any,
                                 ctx: ProbeContext) -> None:
    silent = await raw(b"")
    ports = {smtp_port, dovecot.imap, silent}
    me = psutil.Process()
    fds_before = me.num_fds()
    kinds = []
    for _ in range(2):
        for s, timeout in [
            (spec(dovecot, smtp_port), 15.0),
            (spec(dovecot, smtp_port, rcpt="nobody@example.com"), 15.0),
            (spec(dovecot, smtp_port, imap_tls=Tls()), 15.0),
            (spec(dovecot, silent), 0.3),
        ]:
            kinds.append((await check(s, ctx, timeout)).error_kind)
    assert kinds[:4] == [None, ErrorKind.ASSERTION, ErrorKind.TLS, ErrorKind.TIMEOUT]
    await no_leaks(ports, fds_before)


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any]) -> tuple[MailflowSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[1]", errors, Path("."))
    s = mailflow.parse(sec)
    sec.value("timeout")  # the config reader's key, not the kind's
    sec.finish()
    return s, errors


FULL: dict[str, Any] = {
    "mail_from": SENDER, "rcpt": RCPT, "wait": "20s", "poll_interval": "500ms",
    "timeout": "45s",
    "smtp": {"host": "mail.example.com", "username": SMTP_USER, "password": SMTP_PASSWORD,
             "helo": "shop.example.com"},
    "imap": {"host": "mail.example.com", "tls": True, "username": "probe",
             "password": "imap-s3cret", "mailbox": "Monitoring"},
}


def test_parse_every_key() -> None:
    s, errors = parse(FULL)
    assert errors == []
    assert s == MailflowSpec(
        Endpoint("mail.example.com", 587, Tls(), "require", SMTP_USER, SMTP_PASSWORD),
        "shop.example.com",
        Endpoint("mail.example.com", 993, Tls(implicit=True), "off", "probe", "imap-s3cret"),
        "Monitoring", SENDER, RCPT, 20.0, 0.5)
    assert mailflow.target(s) == "mail.example.com:587 -> mail.example.com:993"
    assert "s3cret" not in repr(s)
    assert s.tag_prefix == parse(FULL)[0].tag_prefix != spec_prefix_with(rcpt="x@example.com")


def spec_prefix_with(**change: Any) -> str:
    return parse({**FULL, **change})[0].tag_prefix


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"smtp": None}, "checks[1]: smtp: is required"),
        ({"rcpt": None}, "checks[1]: rcpt: is required"),
        ({"imap": {"host": "mail.example.com"}},
         "checks[1]: imap: needs username and password"),
        ({"wait": "45s"}, 'checks[1]: wait: must be shorter than the check\'s timeout (45s)'),
        ({"poll_interval": "20ms"}, "checks[1]: poll_interval: must be between 100ms and 10s"),
        ({"smtp": {"host": "mx", "rcpt": RCPT}}, 'checks[1].smtp: unknown key "rcpt"'),
        ({"imap": {"host": "mx", "username": "u"}},
         "checks[1].imap: password: username and password go together"),
    ],
)
def test_parse_errors(change: dict[str, Any], error: str) -> None:
    raw = {k: v for k, v in {**FULL, **change}.items() if v is not None}
    _, errors = parse(raw)
    assert len(errors) == 1 and errors[0].startswith(error), errors
