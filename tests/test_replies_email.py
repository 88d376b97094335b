"""E-mail replies end to end against real servers, with the real daemon.

The page goes out through aiosmtpd (STARTTLS, AUTH), which delivers it into a
real dovecot mailbox; the test reads it there, and places replies into the
agent's mailbox with IMAP APPEND (Python's imaplib, a client of its own). The
agent reads them through dovecot's IMAP (IDLE), acknowledges within its poll
interval, moves what it handled aside and confirms by mail. Forged, foreign,
replayed and unrelated mail changes nothing.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session

from agent import links
from tests.dovecot import Dovecot, running_dovecot
from tests.support import Receiver, start_agent, wait_for
from tests.test_replies_e2e import acknowledged, config, finish, stored, token

AGENT, ALICE = "onwatch@example.com", "alice@example.net"
POLL = 2.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def dovecot(ca: trustme.CA) -> Iterator[Dovecot]:
    with running_dovecot(ca) as d:
        yield d


class Relay:
    """aiosmtpd handler: everything it accepts goes into the dovecot user's Maildir."""

    def __init__(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot
        self.received: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.received.append(email.message_from_bytes(  # type: ignore[arg-type]
            envelope.content, policy=email.policy.default))
        self.dovecot.deliver(envelope.content)
        return "250 2.0.0 Ok: queued"


@pytest.fixture
async def relay(dovecot: Dovecot, ca: trustme.CA) -> AsyncIterator[tuple[Relay, int]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    handler = Relay(dovecot)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="relay.test", tls_context=context), "127.0.0.1", 0)
    yield handler, int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


def _login(d: Dovecot) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", d.imap)
    m.starttls(ssl.create_default_context(cafile=d.ca_file))
    # AUTHENTICATE PLAIN: imaplib's LOGIN cannot send the test user's non-ASCII password.
    m.authenticate("PLAIN", lambda _: f"\0{d.user}\0{d.password}".encode())
    return m


def append(d: Dovecot, message: bytes, mailbox: str = "INBOX") -> None:
    """IMAP APPEND, as a mail client saving a reply into the agent's mailbox would."""
    with _login(d) as m:
        m.append(mailbox, "", imaplib.Time2Internaldate(time.time()), message)


def count(d: Dovecot, mailbox: str) -> int:
    with _login(d) as m:
        status, data = m.select(mailbox, readonly=True)
        return int(data[0] or 0) if status == "OK" else -1


def inbox(d: Dovecot) -> list[EmailMessage]:
    files = [*(d.maildir / "new").iterdir(), *(d.maildir / "cur").iterdir()]
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for f in files]


def reply(sender: str, page: EmailMessage | None, text: str, *, ref: str | None = None
          ) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, AGENT
    msg["Subject"] = "Re: " + (str(page["Subject"]) if page else "hello")
    msg["Message-ID"] = f"<{time.time_ns()}@example.net>"
    if page is not None:
        msg["In-Reply-To"] = str(page["Message-ID"])
    if ref:
        text += f"\n\n> onwatch-ref: {ref}\n"
    msg.set_content(text)
    return msg.as_bytes()


def mail_config(state: Path, receiver: Receiver, d: Dovecot, smtp_port: int, tmp: Path) -> str:
    (tmp / "imap.pw").write_text(d.password)
    service = f"""
[replies.email]
address = "{AGENT}"
poll_interval = "{POLL:g}s"
[replies.email.imap]
host = "127.0.0.1"
port = {d.imap}
ca_file = "{d.ca_file}"
username = "{d.user}"
password_file = "{tmp / 'imap.pw'}"
[replies.email.smtp]
host = "127.0.0.1"
port = {smtp_port}
ca_file = "{d.ca_file}"
"""
    return config(state, receiver, service, f'email = "{ALICE}"')


async def test_email_reply_acknowledges_and_forgeries_change_nothing(
        tmp_path: Path, dovecot: Dovecot, relay: tuple[Relay, int]) -> None:
    handler, smtp_port = relay
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(mail_config(state, receiver, dovecot, smtp_port, tmp_path),
                              tmp_path)
    try:
        await wait_for(lambda: _any(agent.events("reply_channel_connected")), 10, "IMAP")
        page = (await wait_for(lambda: _any([m for m in handler.received
                                             if str(m["To"]) == ALICE]), 15, "the page"))[0]
        delivered = list((dovecot.maildir / "new").iterdir())
        assert delivered, "the page is in the dovecot mailbox"
        ref = str(page["Message-ID"]).strip("<>").removesuffix("@onwatch")
        assert links.verify(links.load_or_create_key(state), ref, time.time()).action == "reply"
        assert "onwatch-ref: " + ref in page.get_content()
        forged = links.sign(b"k" * 32, links.Claims(1, "alice", "reply", int(time.time()) + 60,
                                                   0))
        for bad in (reply("mallory@evil.example", page, "ack"),  # a stranger, the right token
                    reply(ALICE, None, "ack", ref=forged),  # forged token, From: alice
                    reply(ALICE, None, "ack", ref=token(state, "bob", "reply")),  # foreign
                    reply(ALICE, None, "ack", ref=token(state, "alice", "reply", ttl=-9)),
                    reply(ALICE, page, "what is this?")):  # not understood
            await asyncio.to_thread(append, dovecot, bad)
        await asyncio.to_thread(append, dovecot, reply(ALICE, None, "ack"))  # not about a page
        await wait_for(lambda: _any(len(agent.events("reply_refused")) >= 4), 15, "refusals")
        await wait_for(lambda: _any(agent.events("reply_unknown_sender")), 5, "the stranger")
        assert not await acknowledged(state)
        appended = time.monotonic()
        genuine = reply(ALICE, page, "Ack, on my way\n\n> x")
        await asyncio.to_thread(append, dovecot, genuine)
        await wait_for(lambda: acknowledged(state), POLL + 3, "acknowledged")
        took = time.monotonic() - appended
        assert took <= POLL + 1.0, f"took {took:.1f}s, poll interval {POLL}s"
        await wait_for(lambda: _any([m for m in handler.received if "acknowledged by alice, "
                                     "escalation stopped" in m.get_content()]), 10,
                       "the confirmation by mail")
        await finish(agent, state, receiver, "email")
        # Handled mail is moved aside; the unrelated mail stays, and so do the page and
        # the confirmations (this one dovecot user is both the agent's and alice's box).
        assert await asyncio.to_thread(count, dovecot, "onwatch-processed") == 6
        left = [m for m in inbox(dovecot) if "onwatch@example.com" not in str(m["From"])]
        assert [m.get_content().strip() for m in left] == ["ack"]  # the one about no page
        assert await asyncio.to_thread(count, dovecot, "INBOX") == len(inbox(dovecot))
        await asyncio.to_thread(append, dovecot, genuine)  # the same reply again
        await wait_for(lambda: _any(agent.events("reply_no_effect")), POLL + 3, "replay")
        assert stored(state)[0]["state"] == "acknowledged"
        await asyncio.to_thread(append, dovecot, reply(ALICE, page, "Resolved: disk was full"))
        await wait_for(lambda: _any(stored(state)[0]["state"] == "resolved"), POLL + 3,
                       "resolved by mail")
        assert any("disk was full" in e["message"] for e in stored(state)[1])
    finally:
        assert await agent.stop() == 0
        await receiver.close()


async def _any(value: object) -> object:
    return value
