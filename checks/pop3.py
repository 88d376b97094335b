"""POP3 probe: greeting, STLS or implicit TLS, CAPA, optional USER/PASS and STAT.

Config keys:
  host         name or address
  port         default 110, or 995 with `tls = true`
  tls          TLS from the first byte (default false)
  starttls     "require" (default) | "optional" | "off": the STLS command, as for smtp
  verify_tls, ca_file, server_name   as for tcp
  username, password / password_file   USER/PASS, then STAT; never sent without TLS
               unless starttls = "off"

Contract (see checks/base.py): one connection, QUIT; never raises for a failing
target, never sleeps or retries; the scheduler owns the deadline; the socket is closed
on every exit. QUIT after a login is what makes a POP3 server commit deletions; the
probe deletes nothing, so it is harmless.

A small client of our own over asyncio streams (poplib blocks the event loop); every
line and every multi-line answer is bounded.

Failure classification:
  dns, connect, tls   as for tcp
  protocol   a hang-up, a line that is neither +OK nor -ERR, a truncated line, an
             answer longer than its bounds
  assertion  a greeting of -ERR, STLS missing (under "require") or refused, USER or
             PASS refused ("POP3 login refused: -ERR [AUTH] Authentication failed.")
Observations: connect_s, tls_s and cert_days_left (with TLS), messages (after login).
"""

from __future__ import annotations

import contextlib
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

LABEL: Final = "POP3 server"
_MAX_LINES: Final = 200  # lines in a multi-line answer (CAPA)


@dataclass(frozen=True, slots=True)
class Pop3Spec:
    server: Endpoint


def parse(sec: Section) -> Pop3Spec:
    return Pop3Spec(parse_endpoint(sec, 110, 995))


def target(spec: Pop3Spec) -> str:
    return spec.server.address


async def probe(spec: Pop3Spec, ctx: ProbeContext) -> CheckResult:
    """One POP3 conversation; see the module docstring for the classification."""

    async def talk(stream: Stream) -> str:
        session = Session(stream)
        done = await session.start(ctx, spec.server)
        await session.quit()
        return f"POP3 ok ({', '.join(done)})" if done else "POP3 ok"

    return await converse(ctx, spec.server, LABEL, talk)


class Session:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.capabilities: set[str] = set()

    async def start(self, ctx: ProbeContext, server: Endpoint) -> list[str]:
        done: list[str] = []
        ok, text = await self._status("the greeting")
        if not ok:
            raise Failed(ErrorKind.ASSERTION, f"POP3 server refused the connection: -ERR {text}")
        await self.capa()
        if self.stream.is_tls:
            done.append("TLS")
        elif wants_starttls(self.stream, server, "STLS" in self.capabilities, "STLS"):
            await self.ok("STLS")
            await secure(self.stream, ctx, server)
            await self.capa()  # capabilities before TLS must not be trusted
            done.append("STLS")
        if server.username is not None and server.password is not None:
            refuse_clear_password(self.stream, server)
            await self.ok(f"USER {server.username}", name="USER", what="POP3 login")
            await self.ok(f"PASS {server.password}", name="PASS", what="POP3 login")
            stat = (await self.ok("STAT")).split()
            if not stat or not stat[0].isdigit():
                raise Failed(ErrorKind.PROTOCOL,
                             f"POP3 server answered STAT with {show('+OK ' + ' '.join(stat))}")
            self.stream.observations["messages"] = float(stat[0])
            done.append(f"login, {stat[0]} messages")
        return done

    async def _status(self, what: str) -> tuple[bool, str]:
        raw = await self.stream.readline(what)
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        word, _, text = line.partition(" ")
        if word not in ("+OK", "-ERR"):
            raise Failed(ErrorKind.PROTOCOL, f"POP3 server sent {show(raw)} instead of {what}")
        return word == "+OK", text

    async def ok(self, line: str, *, name: str = "", what: str = "") -> str:
        """Send a command that must succeed; its -ERR is a refusal. `name` is what a reason
        may show of the command (never PASS's argument)."""
        name = name or line
        await self.stream.send(line.encode() + b"\r\n")
        ok, text = await self._status(f"the answer to {name}")
        if not ok:
            what = what or f"POP3 {name}"
            raise Failed(ErrorKind.ASSERTION, f"{what} refused: -ERR {show(text)}")
        return text

    async def capa(self) -> None:
        """CAPA's list; a server without CAPA (-ERR, RFC 1939 only) has none to show."""
        await self.stream.send(b"CAPA\r\n")
        ok, _ = await self._status("the answer to CAPA")
        if not ok:
            self.capabilities = set()
            return
        found: set[str] = set()
        for _ in range(_MAX_LINES):
            raw = await self.stream.readline("the end of the CAPA list")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if line == ".":
                self.capabilities = found
                return
            if line:
                found.add(line.split()[0].upper())
        raise Failed(ErrorKind.PROTOCOL,
                     f"POP3 server sent more than {_MAX_LINES} lines in the answer to CAPA")

    async def quit(self) -> None:
        """Polite, and not part of the verdict."""
        with contextlib.suppress(Failed):
            await self.stream.send(b"QUIT\r\n")
            await self._status("the answer to QUIT")
