"""SMTP probe: banner, EHLO, STARTTLS, optional AUTH, optional "accepts mail for" (no DATA).

Config keys:
  host         name or address
  port         default 25, or 465 with `tls = true` (587 is submission with STARTTLS)
  tls          TLS from the first byte, as on port 465 (default false)
  starttls     "require" (default): STARTTLS must be offered and work;
               "optional": used when offered; "off": never (not with tls = true)
  verify_tls, ca_file, server_name   as for tcp
  username, password / password_file   AUTH PLAIN (or LOGIN) after TLS; the password is
               never sent without TLS unless starttls = "off"
  helo         the name we give in EHLO (default: this machine's host name)
  rcpt         an address the server must accept mail for (MAIL FROM + RCPT TO, then
               RSET: no message is sent)
  mail_from    the sender for that test (default "", the null sender <>)

Contract (see checks/base.py): one connection, one conversation, QUIT; never raises for a
failing target, never sleeps or retries; the scheduler owns the deadline; the socket is
closed on every exit. `Session` is reused by the mailflow kind to submit its message.

The client is a small one of our own over asyncio streams, not aiosmtplib: every reply
is read through a bounded buffer, and each is checked against the exact command it
answers, so a failure says "SMTP server answered 421 to EHLO" rather than translating a
library's exception tree back into what happened.

Failure classification:
  dns, connect, tls   as for tcp (tls: handshake or certificate, implicit or STARTTLS)
  protocol   the server hung up mid-conversation, or sent something that is not an
             SMTP reply (garbage, a truncated line, a line over 8 KiB, > 100 lines)
  assertion  a well-formed reply with the wrong code: banner not 220, EHLO refused,
             STARTTLS not offered (under "require") or refused, AUTH refused or not
             offered, MAIL FROM or RCPT TO refused
Reasons never contain the password (it is redacted even where a server echoes it).

Observations: connect_s, tls_s and cert_days_left (with TLS), banner_s.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import time
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

_REPLY: Final = re.compile(r"([2-5][0-9][0-9])([ -]|$)(.*)")
_ADDRESS: Final = re.compile(r"[^\s<>@]+@[^\s<>@]+")
_HELO: Final = re.compile(r"[A-Za-z0-9.\-\[\]:]+")
_MAX_REPLY_LINES: Final = 100
LABEL: Final = "SMTP server"


@dataclass(frozen=True, slots=True)
class SmtpSpec:
    server: Endpoint
    helo: str
    rcpt: str | None = None
    mail_from: str = ""


def parse_server(sec: Section, plain_port: int = 25) -> tuple[Endpoint, str]:
    """The keys that say how to reach and log into a server (shared with mailflow)."""
    server = parse_endpoint(sec, plain_port, 465)
    own = socket.gethostname()
    helo = sec.string("helo", own if _HELO.fullmatch(own) else "localhost")
    if not _HELO.fullmatch(helo):
        sec.error("helo", f"must be a host name or address literal, got {helo!r}")
    return server, helo


def parse_address(sec: Section, key: str, default: str | None) -> str | None:
    value = sec.optional_string(key) if default is None else sec.string(key, default,
                                                                         nonempty=False)
    if value and not _ADDRESS.fullmatch(value):
        sec.error(key, f"must be a mail address like info@example.com, got {value!r}")
    return value


def parse(sec: Section) -> SmtpSpec:
    server, helo = parse_server(sec)
    rcpt = parse_address(sec, "rcpt", None)
    mail_from = parse_address(sec, "mail_from", "") or ""
    if sec.has("mail_from") and rcpt is None:
        sec.error("mail_from", "only used together with rcpt")
    return SmtpSpec(server, helo, rcpt, mail_from)


def target(spec: SmtpSpec) -> str:
    return spec.server.address


async def probe(spec: SmtpSpec, ctx: ProbeContext) -> CheckResult:
    """One SMTP conversation; see the module docstring for the classification."""

    async def talk(stream: Stream) -> str:
        session = await Session.start(stream, ctx, spec.server, spec.helo)
        done = list(session.done)
        if spec.rcpt is not None:
            await session.envelope(spec.mail_from, spec.rcpt)
            await session.command("RSET")  # drop the transaction: no message is sent
            done.append(f"accepts mail for {spec.rcpt}")
        await session.quit()
        return f"SMTP ok ({', '.join(done)})" if done else "SMTP ok"

    return await converse(ctx, spec.server, LABEL, talk)


class Session:
    """An SMTP conversation, one command and one checked reply at a time."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.extensions: dict[str, str] = {}  # EHLO keyword -> its parameters
        self.done: list[str] = []  # what worked, for the success reason

    @classmethod
    async def start(cls, stream: Stream, ctx: ProbeContext, server: Endpoint, helo: str
                    ) -> Session:
        """Banner, EHLO, STARTTLS (per `server.starttls`) and AUTH (when configured)."""
        self = cls(stream)
        started = time.perf_counter()
        code, lines = await self.reply("the banner")
        stream.observations["banner_s"] = time.perf_counter() - started
        if code != 220:
            raise Failed(ErrorKind.ASSERTION,
                         f"SMTP server greeted with {code} instead of 220: {show(lines[0])}")
        await self.ehlo(helo)
        if stream.is_tls:
            self.done.append("TLS")
        elif wants_starttls(stream, server, "STARTTLS" in self.extensions, "STARTTLS"):
            await self.command("STARTTLS", want=(220,))
            await secure(stream, ctx, server)
            await self.ehlo(helo)  # the extensions may differ once encrypted
            self.done.append("STARTTLS")
        if server.username is not None and server.password is not None:
            refuse_clear_password(stream, server)
            await self.login(server.username, server.password)
        return self

    async def reply(self, what: str) -> tuple[int, list[str]]:
        """One reply, all its lines; garbage or a hang-up is a protocol failure."""
        code, lines = "", []
        for _ in range(_MAX_REPLY_LINES):
            raw = await self.stream.readline(what)
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            m = _REPLY.fullmatch(line)
            if m is None or (code and m.group(1) != code):
                raise Failed(ErrorKind.PROTOCOL, f"SMTP server sent {show(raw)} instead of {what}")
            code = m.group(1)
            lines.append(m.group(3))
            if m.group(2) != "-":
                return int(code), lines
        raise Failed(ErrorKind.PROTOCOL,
                     f"SMTP server sent more than {_MAX_REPLY_LINES} lines in {what}")

    async def command(self, line: str, want: tuple[int, ...] = (250,), *, name: str = "",
                      refused: str = "") -> list[str]:
        """Send `line`; a reply outside `want` fails with "answered <code> to <name>"."""
        name = name or line
        await self.stream.send(line.encode() + b"\r\n")
        code, lines = await self.reply(f"the answer to {name}")
        if code not in want:
            said = f"{code} {lines[-1]}".strip()
            raise Failed(ErrorKind.ASSERTION,
                         f"{refused}: {show(said)}" if refused
                         else f"SMTP server answered {code} to {name}: {show(lines[-1])}")
        return lines

    async def ehlo(self, helo: str) -> None:
        lines = await self.command(f"EHLO {helo}", name="EHLO")
        self.extensions = {}
        for line in lines[1:]:
            keyword, _, params = line.replace("=", " ", 1).partition(" ")
            self.extensions[keyword.upper()] = params.upper()

    async def login(self, username: str, password: str) -> None:
        offered = self.extensions.get("AUTH", "").split()
        refused = "SMTP AUTH refused"
        if "PLAIN" in offered:
            blob = _b64(f"\0{username}\0{password}")
            await self.command(f"AUTH PLAIN {blob}", (235,), name="AUTH PLAIN", refused=refused)
        elif "LOGIN" in offered:
            await self.command("AUTH LOGIN", (334,), name="AUTH LOGIN", refused=refused)
            await self.command(_b64(username), (334,), name="AUTH LOGIN", refused=refused)
            await self.command(_b64(password), (235,), name="AUTH LOGIN", refused=refused)
        else:
            has = f" (it offers {' '.join(offered)})" if offered else ""
            raise Failed(ErrorKind.ASSERTION,
                         f"SMTP server offers no AUTH PLAIN or LOGIN{has}")
        self.done.append("AUTH")

    async def envelope(self, mail_from: str, rcpt: str) -> None:
        await self.command(f"MAIL FROM:<{mail_from}>")
        await self.command(f"RCPT TO:<{rcpt}>", (250, 251),
                           refused=f"SMTP server refused RCPT TO:<{rcpt}>")

    async def data(self, message: bytes) -> None:
        """The message body, dot-stuffed, ending in CRLF.CRLF; it must be accepted (250)."""
        await self.command("DATA", (354,))
        lines = message.replace(b"\r\n", b"\n").split(b"\n")
        body = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
        await self.stream.send(body.rstrip(b"\r\n") + b"\r\n")
        await self.command(".", name="the end of DATA",
                           refused="SMTP server did not accept the message")

    async def quit(self) -> None:
        """Polite, and not part of the verdict: what mattered has been answered."""
        with contextlib.suppress(Failed):
            await self.stream.send(b"QUIT\r\n")
            await self.reply("the answer to QUIT")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
