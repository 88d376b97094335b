"""E-mail reply channel: pages out through SMTP, replies read from the agent's mailbox.

Uses the project's own SMTP and IMAP clients (checks/smtp.py, checks/imap.py)
rather than aioimaplib: they are already asyncio, bounded (line and literal
sizes), handle STARTTLS/implicit TLS and the never-send-a-password-in-clear
rule, and are tested against a real dovecot. What this adds is the reading
side: SELECT, `UID SEARCH UID n:*`, a partial `UID FETCH` (at most 60 000
bytes a message), IDLE, and moving handled mail aside (`UID MOVE`, or COPY +
`\\Deleted` + EXPUNGE where MOVE is missing).

The listener keeps one IMAP connection. With IDLE (RFC 2177) the server tells
it about new mail at once; each IDLE lasts at most `poll_interval`, so a
connection that died silently is found within that time. Without IDLE it
polls every `poll_interval`. Mail that refers to no page of ours is left
where it is (and not read again); mail that refers to one is handed on and
then moved to `processed_mailbox`, whatever came of it.
"""

from __future__ import annotations

import asyncio
import re
import time

import structlog

from agent.config_replies import ContactReply, Mailbox
from checks import imap, smtp
from checks._mail import connect
from checks._net import Failed, Stream
from checks.base import ProbeContext
from checks.result import ErrorKind
from notifiers.channels import ChannelResult
from notifiers.replies import Answer, Emit, Page, mail, result

log = structlog.get_logger(__name__)

FETCH_BYTES = 60_000  # under checks/imap.py's 64 KiB literal bound
BATCH = 50  # messages handled per scan: bounded work per wake-up
_UID = re.compile(r"\bUID (\d+)")
_NETWORK = (ErrorKind.CONNECT, ErrorKind.DNS, ErrorKind.TIMEOUT)


class Email:
    name = "email"

    def __init__(self, box: Mailbox, contacts: dict[str, ContactReply]) -> None:
        self.box = box
        self.contacts = {n: c for n, c in contacts.items() if c.email}
        self._by_address = {c.email: n for n, c in self.contacts.items()}
        self._ctx = ProbeContext()
        self._next_uid = 1
        self._validity = ""
        self._tag = 0

    def serves(self, contact: str) -> bool:
        return contact in self.contacts

    def channel(self, contact: str) -> str:
        return f"email-reply://{self.box.smtp.address}/{self.contacts[contact].email}"

    async def _submit(self, to: str, data: bytes) -> None:
        stream = await connect(self._ctx, self.box.smtp, smtp.LABEL)
        try:
            session = await smtp.Session.start(stream, self._ctx, self.box.smtp, self.box.helo)
            await session.envelope(self.box.address, to)
            await session.data(data)
            await session.quit()
        finally:
            await stream.close()

    async def send(self, page: Page) -> ChannelResult:
        to = self.contacts[page.contact].email or ""
        token = page.tokens.get("reply")
        started = time.monotonic()
        try:
            async with asyncio.timeout(30):
                await self._submit(to, mail.page(sender=self.box.address, to=to,
                                                 title=page.title, body=page.body, token=token))
        except Failed as exc:
            return ChannelResult(self.channel(page.contact), "email", False, exc.reason,
                                 time.monotonic() - started, network=exc.kind in _NETWORK)
        except TimeoutError:
            return result(self.channel(page.contact), "email", started, False, "timeout")
        return result(self.channel(page.contact), "email", started, True, "delivered")

    async def confirm(self, answer: Answer, text: str) -> None:
        reply = answer.context
        if answer.contact is None or not isinstance(reply, mail.Reply):
            return
        to = self.contacts[answer.contact].email or reply.sender
        try:
            async with asyncio.timeout(30):
                await self._submit(to, mail.confirmation(sender=self.box.address, to=to,
                                                         reply=reply, text=text))
        except (Failed, TimeoutError) as exc:
            log.warning("reply_confirm_failed", channel="email", contact=answer.contact,
                        detail=getattr(exc, "reason", "timeout"))

    async def listen(self, emit: Emit) -> None:
        try:
            stream = await connect(self._ctx, self.box.imap, imap.LABEL)
        except Failed as exc:
            raise ConnectionError(exc.reason) from None
        try:
            session = await imap.Session.start(stream, self._ctx, self.box.imap)
            # An existing mailbox answers NO to CREATE: that is fine.
            await session.command("CREATE", imap.mailbox_name(self.box.processed))
            await self._select(session)
            idle = "IDLE" in session.capabilities
            log.info("reply_channel_connected", channel="email", idle=idle,
                     mailbox=self.box.mailbox)
            while True:
                await self._scan(session, emit)
                if idle:
                    await self._idle(session)
                else:
                    await asyncio.sleep(self.box.poll_interval)
                    await session.ok("NOOP")
        except Failed as exc:
            raise ConnectionError(exc.reason) from None
        finally:
            await stream.close()

    async def _select(self, session: imap.Session) -> None:
        untagged = await session.ok("SELECT", imap.mailbox_name(self.box.mailbox),
                                    what=f'SELECT "{self.box.mailbox}"')
        for line in untagged:
            m = re.search(r"\[UIDVALIDITY (\d+)\]", line, re.I)
            if m and m.group(1) != self._validity:
                # A new mailbox (or one rebuilt): every UID means something else now.
                self._validity, self._next_uid = m.group(1), 1

    async def _scan(self, session: imap.Session, emit: Emit) -> None:
        untagged = await session.ok(f"UID SEARCH UID {self._next_uid}:*", what="SEARCH")
        uids = sorted({int(w) for line in untagged if line.upper().startswith("SEARCH")
                       for w in line.split()[1:] if w.isdigit()})
        for uid in [u for u in uids if u >= self._next_uid][:BATCH]:
            self._next_uid = uid + 1
            raw = await self._fetch(session, uid)
            if raw is None:
                continue
            reply = mail.read(raw)
            if reply.token is None or reply.sender == self.box.address.lower():
                continue  # not an answer to one of our pages: not ours to touch
            contact = self._by_address.get(reply.sender)
            await emit(Answer("email", contact, reply.token, f"mail from {reply.sender}",
                              action=reply.action, cause=reply.cause, context=reply))
            await self._move(session, uid)

    async def _fetch(self, session: imap.Session, uid: int) -> bytes | None:
        untagged = await session.ok(f"UID FETCH {uid} (UID BODY.PEEK[]<0.{FETCH_BYTES}>)",
                                    what="FETCH")
        for line in untagged:
            m = _UID.search(line)
            start = line.find("}\r\n")
            if m and int(m.group(1)) == uid and start >= 0:
                body = line[start + 3:]
                end = body.rfind(")")
                return (body[:end] if end >= 0 else body).encode("utf-8", "replace")
        return None

    async def _move(self, session: imap.Session, uid: int) -> None:
        target = imap.mailbox_name(self.box.processed)
        if "MOVE" in session.capabilities:
            await session.ok(f"UID MOVE {uid}", target, what="MOVE")
            return
        await session.ok(f"UID COPY {uid}", target, what="COPY")
        await session.ok(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)", what="STORE")
        await session.ok(f"UID EXPUNGE {uid}" if "UIDPLUS" in session.capabilities
                         else "EXPUNGE", what="EXPUNGE")

    async def _idle(self, session: imap.Session) -> None:
        """IDLE until the server reports new mail or `poll_interval` passes, then DONE."""
        self._tag += 1
        tag = f"I{self._tag}"
        stream: Stream = session.stream
        await stream.send(f"{tag} IDLE\r\n".encode())
        first = (await stream.readline("the answer to IDLE")).decode("utf-8", "replace")
        if not first.startswith("+"):
            raise Failed(ErrorKind.PROTOCOL, f"IMAP server refused IDLE: {first.strip()[:80]}")
        try:
            async with asyncio.timeout(self.box.poll_interval):
                while True:
                    line = (await stream.readline("IDLE")).decode("utf-8", "replace").upper()
                    if " EXISTS" in line or " RECENT" in line:
                        break
        except TimeoutError:
            pass
        await stream.send(b"DONE\r\n")
        for _ in range(1000):  # untagged lines may still arrive before the tagged OK
            line = (await stream.readline("the end of IDLE")).decode("utf-8", "replace")
            if line.startswith(tag + " "):
                return
        raise Failed(ErrorKind.PROTOCOL, "IMAP server did not end IDLE")

    async def close(self) -> None:
        await self._ctx.close()
