"""Plumbing shared by the mail kinds (smtp, imap, pop3, mailflow), over checks/_net.py.

- `Endpoint`/`parse_endpoint`: a mail server's keys -- host, port, TLS, STARTTLS mode,
  credentials -- and the forms its password may travel in, to redact.
- `wants_starttls`, `refuse_clear_password`, `secure`: the STARTTLS rules every mail
  protocol follows alike.
- `connect`, `converse`: a connection (TLS from the start when configured), a protocol
  conversation over it, `Failed` translated into a result, the stream always closed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from agent.fields import Section
from checks import _input
from checks._net import PLAIN, Failed, Stream, Tls, hostport, parse_tls, tls_context
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

STARTTLS_MODES: Final = ("require", "optional", "off")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A mail server: where, how encrypted, and who logs in."""

    host: str
    port: int
    tls: Tls = PLAIN
    starttls: str = "require"  # require | optional | off; "off" when tls.implicit
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return hostport(self.host, self.port)

    def secrets(self) -> list[str]:
        """The password as it may travel (plain, base64, an AUTH PLAIN blob): to redact."""
        if not self.password:
            return []
        plain = f"\0{self.username}\0{self.password}"
        return [self.password, *(base64.b64encode(t.encode()).decode()
                                 for t in (self.password, plain))]


def parse_endpoint(sec: Section, plain_port: int, tls_port: int) -> Endpoint:
    host = _input.host(sec)
    tls = parse_tls(sec)
    port = sec.integer("port", tls_port if tls.implicit else plain_port, low=1, high=65535)
    starttls = sec.choice("starttls", STARTTLS_MODES, "require")
    if tls.implicit and sec.has("starttls"):
        sec.error("starttls", "not used with tls = true (the connection is TLS from the start)")
    starttls = "off" if tls.implicit else starttls
    username = sec.optional_string("username")
    before = len(sec.errors)
    password = sec.secret("password")
    if (username is None) != (password is None) and len(sec.errors) == before:
        sec.error("username" if username is None else "password",
                  "username and password go together: give both or neither")
    if password and any(c in password for c in "\r\n\0"):
        sec.error("password", "must not contain line breaks or NUL characters")
    return Endpoint(host, port, tls, starttls, username, password)


def wants_starttls(stream: Stream, endpoint: Endpoint, offered: bool, command: str) -> bool:
    """Whether to upgrade now; a missing STARTTLS under "require" is a failure."""
    if stream.is_tls or endpoint.starttls == "off":
        return False
    if offered:
        return True
    if endpoint.starttls == "require":
        raise Failed(ErrorKind.ASSERTION, f"{stream.label} does not offer {command}")
    return False


def refuse_clear_password(stream: Stream, endpoint: Endpoint) -> None:
    """Under starttls = "optional", a server without TLS does not get the password."""
    if endpoint.password and not stream.is_tls and endpoint.starttls != "off":
        raise Failed(ErrorKind.ASSERTION,
                     f"{stream.label} offers no TLS; not sending the password in clear "
                     '(starttls = "off" allows it)')


async def secure(stream: Stream, ctx: ProbeContext, endpoint: Endpoint) -> None:
    """The handshake, with the endpoint's context and name."""
    await stream.start_tls(tls_context(ctx, endpoint.tls),
                           endpoint.tls.server_name or endpoint.host)


async def connect(ctx: ProbeContext, endpoint: Endpoint, label: str) -> Stream:
    """A connection, TLS from the start when the endpoint says so; closed if that fails."""
    stream = await Stream.open(endpoint.host, endpoint.port, label)
    if endpoint.tls.implicit:
        try:
            await secure(stream, ctx, endpoint)
        except BaseException:
            await stream.close()
            raise
    return stream


async def converse(ctx: ProbeContext, endpoint: Endpoint, label: str,
                   talk: Callable[[Stream], Awaitable[str]]) -> CheckResult:
    """Connect, let `talk` speak the protocol and return the success reason, translate
    `Failed`, always close."""
    started = time.perf_counter()
    stream: Stream | None = None
    try:
        stream = await connect(ctx, endpoint, label)
        reason = await talk(stream)
        return CheckResult.success(time.perf_counter() - started, reason, stream.observations)
    except Failed as failed:
        return failed.result(started, stream.observations if stream else {},
                             endpoint.secrets())
    finally:
        if stream is not None:
            await stream.close()

