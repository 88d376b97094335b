"""Mail round trip: send a tagged message through SMTP, find it through IMAP, delete it.

The check that proves mail actually flows: a server can answer every protocol
check and still lose mail (a full queue, a broken filter, a dead delivery agent).

Config keys:
  mail_from      sender of the test message (required)
  rcpt           recipient of the test message; its mailbox is the one read (required)
  wait           how long to look for the message after SMTP accepted it (default "30s");
                 keep it below the check's timeout, or the deadline ends the search
                 first and the result is a plain timeout
  poll_interval  pause between two searches (default "1s", between 100ms and 10s)
  [smtp]         a table: host, port (default 587; 465 with tls), tls, starttls,
                 verify_tls, ca_file, server_name, username, password/password_file, helo
                 (as for the smtp kind)
  [imap]         a table: host, port, tls, starttls, verify_tls, ca_file, server_name,
                 username, password/password_file (required), mailbox (default "INBOX")

Contract (see checks/base.py): IMAP logs in and opens the mailbox first (so a broken
IMAP side fails before anything is sent), then the message goes out through SMTP, then
`UID SEARCH HEADER X-Onwatch-Probe <tag>` runs every `poll_interval`, at most
`wait / poll_interval + 1` times. The found message, and any this check left behind
in earlier runs (same tag prefix: a message that arrived after its run gave up), is
deleted (STORE \\Deleted, then UID EXPUNGE where UIDPLUS allows, else EXPUNGE).

Why this probe sleeps: everywhere else a probe never sleeps and the scheduler owns
time. Delivery takes time that no request can shorten; waiting for it is the thing
measured. The pauses are bounded in count and length, and the whole run remains
under the scheduler's deadline, which cancels it (and closes both connections).

latency_s runs from the start of sending (SMTP connect) to the search that found the
message. Observations: submit_s (SMTP, connect to accepted), deliver_s (accepted to
found), searches, stale_deleted.

Failure classification: as the smtp and imap kinds, each reason prefixed with the leg
("cannot send the test message: SMTP AUTH refused: ..."; "cannot read the mailbox:
IMAP LOGIN refused: ..."); plus assertion "test message not found in INBOX within 30s
(31 searches)", and "... could not delete it: ..." when cleaning up fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from agent.fields import Section, parse_duration
from checks import imap, smtp
from checks._mail import Endpoint, connect
from checks._net import Failed, Stream
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

T = TypeVar("T")
HEADER: Final = "X-Onwatch-Probe"
_MAX_STALE: Final = 100  # leftovers deleted per run


@dataclass(frozen=True, slots=True)
class MailflowSpec:
    smtp: Endpoint
    helo: str
    imap: Endpoint
    mailbox: str
    mail_from: str
    rcpt: str
    wait: float = 30.0
    poll_interval: float = 1.0

    @property
    def tag_prefix(self) -> str:
        """Stable per check: leftovers of earlier runs are recognised, other checks' not."""
        identity = f"{self.smtp.address}|{self.rcpt}|{self.imap.address}|{self.mailbox}"
        return "onwatch-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def parse(sec: Section) -> MailflowSpec:
    mail_from = smtp.parse_address(sec, "mail_from", None) or ""
    rcpt = smtp.parse_address(sec, "rcpt", None) or ""
    for key, value in (("mail_from", mail_from), ("rcpt", rcpt)):
        if not value and not sec.has(key):
            sec.error(key, "is required")
    wait = sec.duration("wait", 30.0)
    poll = sec.duration("poll_interval", 1.0)
    if not 0.1 <= poll <= 10:
        sec.error("poll_interval", "must be between 100ms and 10s")
    timeout = parse_duration(t) if isinstance(t := sec.raw.get("timeout"), str) else None
    if timeout is not None and wait >= timeout:
        sec.error("wait", f"must be shorter than the check's timeout ({t}): the search "
                          "must end before the deadline does")
    out, helo = _sub(sec, "smtp", lambda s: smtp.parse_server(s, 587))
    inbound = _sub(sec, "imap", imap.parse)
    if sec.has("imap") and inbound.server.username is None and inbound.server.password is None:
        sec.error("imap", "needs username and password: the mailbox is read")
    return MailflowSpec(out, helo, inbound.server, inbound.mailbox, mail_from, rcpt, wait, poll)


def _sub(sec: Section, key: str, reader: Callable[[Section], T]) -> T:
    """A sub-table read by its own kind's reader; a missing one is one error, not one per
    key it lacks."""
    if not sec.has(key):
        sec.error(key, "is required (a table with at least host)")
        return reader(Section({}, f"{sec.path}.{key}", [], sec.base_dir))
    table = sec.sub(key) or Section({}, f"{sec.path}.{key}", [], sec.base_dir)
    value = reader(table)
    table.finish()
    return value


def target(spec: MailflowSpec) -> str:
    return f"{spec.smtp.address} -> {spec.imap.address}"


async def probe(spec: MailflowSpec, ctx: ProbeContext) -> CheckResult:
    """One round trip; see the module docstring."""
    started = time.perf_counter()
    obs: dict[str, float] = {}
    tag = f"{spec.tag_prefix}-{secrets.token_hex(8)}"
    redact = [*spec.smtp.secrets(), *spec.imap.secrets()]
    async with contextlib.AsyncExitStack() as streams:  # both closed on every exit
        leg = "cannot read the mailbox"
        try:
            inbox = await connect(ctx, spec.imap, imap.LABEL)
            streams.push_async_callback(inbox.close)
            reader = await imap.Session.start(inbox, ctx, spec.imap)
            await reader.open(spec.mailbox, readonly=False)

            leg = "cannot send the test message"
            sent = time.perf_counter()
            await _submit(spec, ctx, tag, streams)
            accepted = time.perf_counter()
            obs["submit_s"] = accepted - sent

            leg = "cannot read the mailbox"
            uid = await _find(spec, reader, tag, obs)
            found = time.perf_counter()
            if uid is None:
                searches = obs["searches"]
                return CheckResult.failure(
                    ErrorKind.ASSERTION, f"test message not found in {spec.mailbox} within "
                    f"{spec.wait:g}s ({searches:g} searches)", found - sent, obs)
            obs["deliver_s"] = found - accepted

            leg = f"found the test message after {found - accepted:.1f}s but could not delete it"
            obs["stale_deleted"] = float(await _delete(reader, spec.tag_prefix, uid))
            await reader.logout()
        except Failed as failed:
            return Failed(failed.kind, f"{leg}: {failed.reason}").result(started, obs, redact)
    reason = f"mail went through in {obs['deliver_s']:.1f}s ({spec.rcpt} in {spec.mailbox})"
    return CheckResult.success(found - sent, reason, obs)


def message(spec: MailflowSpec, tag: str) -> bytes:
    lines = [
        f"From: onwatch <{spec.mail_from}>",
        f"To: <{spec.rcpt}>",
        f"Subject: onwatch mail round trip [{tag}]",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Message-ID: <{tag}@onwatch.invalid>",
        f"{HEADER}: {tag}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "onwatch sent this message to check that mail flows; it deletes it once found.",
    ]
    return "\r\n".join(lines).encode() + b"\r\n"


async def _submit(spec: MailflowSpec, ctx: ProbeContext, tag: str,
                  streams: contextlib.AsyncExitStack) -> None:
    out: Stream = await connect(ctx, spec.smtp, smtp.LABEL)
    streams.push_async_callback(out.close)
    session = await smtp.Session.start(out, ctx, spec.smtp, spec.helo)
    await session.envelope(spec.mail_from, spec.rcpt)
    await session.data(message(spec, tag))
    await session.quit()
    await out.close()  # done with it: do not hold the connection while polling


async def _find(spec: MailflowSpec, reader: imap.Session, tag: str, obs: dict[str, float]
                ) -> str | None:
    """The UID of the tagged message, or None after the last search."""
    searches = int(spec.wait / spec.poll_interval) + 1
    for n in range(1, searches + 1):
        obs["searches"] = float(n)
        await reader.ok("NOOP")  # lets the server announce new mail before the search
        uids = await _search(reader, tag)
        if uids:
            return uids[0]
        if n < searches:
            await asyncio.sleep(spec.poll_interval)  # bounded; see the module docstring
    return None


async def _search(reader: imap.Session, text: str) -> list[str]:
    untagged = await reader.ok("UID SEARCH HEADER", HEADER, text, what="SEARCH")
    found = [word for line in untagged if line.upper().startswith("SEARCH")
             for word in line.split()[1:]]
    if not all(uid.isdigit() for uid in found):
        raise Failed(ErrorKind.PROTOCOL, f"IMAP server answered SEARCH with {found[:5]}")
    return found


async def _delete(reader: imap.Session, prefix: str, uid: str) -> int:
    """Deletes `uid` and this check's leftovers; returns how many leftovers there were."""
    uids = sorted({uid, *(await _search(reader, prefix))[:_MAX_STALE]}, key=int)
    numbers = ",".join(uids)
    await reader.ok(f"UID STORE {numbers} +FLAGS.SILENT (\\Deleted)", what="STORE")
    if "UIDPLUS" in reader.capabilities:
        await reader.ok(f"UID EXPUNGE {numbers}", what="EXPUNGE")
    else:
        await reader.ok("EXPUNGE")
    return len(uids) - 1

