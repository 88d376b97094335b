"""IMAP probe: greeting, STARTTLS or implicit TLS, CAPABILITY, optional LOGIN and mailbox.

Config keys:
  host         name or address
  port         default 143, or 993 with `tls = true`
  tls          TLS from the first byte (default false)
  starttls     "require" (default) | "optional" | "off", as for smtp
  verify_tls, ca_file, server_name   as for tcp
  username, password / password_file   LOGIN; never sent without TLS unless
               starttls = "off"
  mailbox      opened read-only after LOGIN (default "INBOX"): a server can accept a
               login and still fail to open the mail store behind it

Contract (see checks/base.py): one connection, LOGOUT; never raises for a failing
target, never sleeps or retries; the scheduler owns the deadline; the socket is closed
on every exit. The mailbox is opened with EXAMINE, the read-only SELECT: a monitor
must not clear \\Recent flags or take write locks. `Session` is reused by mailflow.

A small client of our own over asyncio streams (imaplib blocks the event loop): tagged
commands, untagged lines and literals read through bounded buffers.

Failure classification:
  dns, connect, tls   as for tcp
  protocol   a hang-up, garbage instead of an IMAP response, a truncated line, a
             response longer than its bounds, BAD (the server did not understand us)
  assertion  a greeting of BYE, STARTTLS missing (under "require") or refused,
             LOGINDISABLED, LOGIN refused ("IMAP LOGIN refused: [AUTHENTICATIONFAILED]
             ..."), the mailbox refused (it does not exist), a BYE mid-conversation
Observations: connect_s, tls_s and cert_days_left (with TLS), messages (in the mailbox).
"""

from __future__ import annotations

import base64
import contextlib
import re
from dataclasses import dataclass
from typing import Final

from agent.fields import Section
from checks._mail import (
    Endpoint,
    converse,
    parse_endpoint,
    refuse_clear_password,
    secure,
    wants_starttls,
)
from checks._net import Failed, Stream, show
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

LABEL: Final = "IMAP server"
_MAX_LINES: Final = 1000  # untagged lines in one response
_MAX_LITERAL: Final = 64 * 1024
_LITERAL: Final = re.compile(rb"\{(\d{1,9})\+?\}\r?\n\Z")
_QUOTABLE: Final = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class ImapSpec:
    server: Endpoint
    mailbox: str = "INBOX"


def parse(sec: Section) -> ImapSpec:
    server = parse_endpoint(sec, 143, 993)
    mailbox = sec.string("mailbox", "INBOX")
    if sec.has("mailbox") and server.username is None:
        sec.error("mailbox", "needs username and password: a mailbox is opened after LOGIN")
    return ImapSpec(server, mailbox)


def target(spec: ImapSpec) -> str:
    return spec.server.address


async def probe(spec: ImapSpec, ctx: ProbeContext) -> CheckResult:
    """One IMAP conversation; see the module docstring for the classification."""

    async def talk(stream: Stream) -> str:
        session = await Session.start(stream, ctx, spec.server)
        done = list(session.done)
        if session.logged_in:
            count = await session.open(spec.mailbox, readonly=True)
            stream.observations["messages"] = float(count)
            done.append(f"{spec.mailbox} has {count} messages")
        await session.logout()
        return f"IMAP ok ({', '.join(done)})" if done else "IMAP ok"

    return await converse(ctx, spec.server, LABEL, talk)


class Session:
    """An IMAP conversation: tagged commands, their untagged data, their verdicts."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.capabilities: set[str] = set()
        self.logged_in = False
        self.done: list[str] = []
        self._tag = 0

    @classmethod
    async def start(cls, stream: Stream, ctx: ProbeContext, server: Endpoint) -> Session:
        """Greeting, CAPABILITY, STARTTLS (per `server.starttls`), LOGIN (when configured)."""
        self = cls(stream)
        greeting = await self._line("the greeting")
        status, _, text = greeting.partition(" ")[2].partition(" ")
        if not greeting.startswith("* ") or status.upper() not in ("OK", "PREAUTH", "BYE"):
            raise Failed(ErrorKind.PROTOCOL,
                         f"IMAP server sent {show(greeting.encode())} instead of a greeting")
        if status.upper() == "BYE":
            raise Failed(ErrorKind.ASSERTION, f"IMAP server refused the connection: {show(text)}")
        self.logged_in = status.upper() == "PREAUTH"
        await self.capability()
        if stream.is_tls:
            self.done.append("TLS")
        elif wants_starttls(stream, server, "STARTTLS" in self.capabilities, "STARTTLS"):
            await self.ok("STARTTLS")
            await secure(stream, ctx, server)
            await self.capability()  # capabilities before TLS must not be trusted
            self.done.append("STARTTLS")
        if server.username is not None and server.password is not None and not self.logged_in:
            refuse_clear_password(stream, server)
            if "LOGINDISABLED" in self.capabilities:
                raise Failed(ErrorKind.ASSERTION, "IMAP server disables LOGIN (LOGINDISABLED)")
            await self.ok("LOGIN", server.username, server.password)
            self.logged_in = True
            self.done.append("LOGIN")
        return self

    async def _line(self, what: str) -> str:
        """One response line with its literals spliced in ({n} then n bytes), bounded."""
        raw = await self.stream.readline(what)
        for _ in range(16):
            m = _LITERAL.search(raw)
            if m is None:
                break
            size = int(m.group(1))
            if size > _MAX_LITERAL:
                raise Failed(ErrorKind.PROTOCOL, f"IMAP server sent a {size}-byte literal "
                                                 f"in {what} (more than {_MAX_LITERAL})")
            raw += await self.stream.readexactly(size, what) + await self.stream.readline(what)
        return raw.rstrip(b"\r\n").decode("utf-8", "replace")

    async def command(self, name: str, *args: str) -> tuple[str, str, list[str]]:
        """(OK/NO/BAD, text, untagged lines). Arguments are quoted, or sent as literals
        when they cannot be (non-ASCII, control characters)."""
        self._tag += 1
        tag = f"W{self._tag}"
        parts = [f"{tag} {name}".encode()]
        for arg in args:
            if _QUOTABLE.fullmatch(arg):
                parts[-1] += b' "' + arg.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'
            else:
                data = arg.encode()
                parts[-1] += b" {%d}\r\n" % len(data)
                parts.append(data)
        untagged: list[str] = []
        for i, part in enumerate(parts):
            if i:  # a literal: the server must invite it ("+ ...") first
                line = await self._line(f"the answer to {name}")
                if not line.startswith("+"):
                    return self._verdict(tag, name, line, untagged)
            await self.stream.send(part)
        await self.stream.send(b"\r\n")
        for _ in range(_MAX_LINES):
            line = await self._line(f"the answer to {name}")
            if line.startswith(tag + " "):
                return self._verdict(tag, name, line, untagged)
            if not line.startswith("* "):
                raise Failed(ErrorKind.PROTOCOL, f"IMAP server sent {show(line.encode())} "
                                                 f"instead of the answer to {name}")
            if line[2:].upper().startswith("BYE") and name != "LOGOUT":
                raise Failed(ErrorKind.ASSERTION,
                             f"IMAP server said BYE to {name}: {show(line[6:])}")
            untagged.append(line[2:])
        raise Failed(ErrorKind.PROTOCOL,
                     f"IMAP server sent more than {_MAX_LINES} lines in the answer to {name}")

    @staticmethod
    def _verdict(tag: str, name: str, line: str, untagged: list[str]
                 ) -> tuple[str, str, list[str]]:
        rest = line[len(tag) + 1:] if line.startswith(tag + " ") else ""
        status, _, text = rest.partition(" ")
        if status.upper() not in ("OK", "NO", "BAD"):
            raise Failed(ErrorKind.PROTOCOL, f"IMAP server sent {show(line.encode())} "
                                             f"instead of the answer to {name}")
        return status.upper(), text, untagged

    async def ok(self, name: str, *args: str, what: str = "") -> list[str]:
        """A command that must succeed: NO is a refusal (assertion), BAD a protocol error."""
        status, text, untagged = await self.command(name, *args)
        what = what or name
        if status == "NO":
            raise Failed(ErrorKind.ASSERTION, f"IMAP {what} refused: {show(text)}")
        if status == "BAD":
            raise Failed(ErrorKind.PROTOCOL, f"IMAP server answered BAD to {what}: {show(text)}")
        return untagged

    async def capability(self) -> None:
        for line in await self.ok("CAPABILITY"):
            if line.upper().startswith("CAPABILITY "):
                self.capabilities = set(line.upper().split()[1:])

    async def open(self, mailbox: str, *, readonly: bool) -> int:
        """EXAMINE or SELECT `mailbox`; returns how many messages it holds."""
        name = "EXAMINE" if readonly else "SELECT"
        untagged = await self.ok(name, mailbox_name(mailbox), what=f'{name} "{mailbox}"')
        for line in untagged:
            count, _, word = line.partition(" ")
            if word.upper() == "EXISTS" and count.isdigit():
                return int(count)
        raise Failed(ErrorKind.PROTOCOL, f"IMAP server did not say how many messages "
                                         f"{mailbox} holds (no EXISTS)")

    async def logout(self) -> None:
        """Polite, and not part of the verdict."""
        with contextlib.suppress(Failed):
            await self.command("LOGOUT")


def mailbox_name(name: str) -> str:
    """RFC 3501 modified UTF-7: "Entwürfe" -> "Entw&APw-rfe"."""
    out, pending = [], ""

    def flush() -> None:
        nonlocal pending
        if pending:
            encoded = base64.b64encode(pending.encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.decode().replace("/", ",") + "-")
            pending = ""

    for ch in name:
        if "\x20" <= ch <= "\x7e":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending += ch
    flush()
    return "".join(out)
