"""Plumbing shared by the probes that speak over a socket of their own (tcp scripts,
smtp, imap, pop3, mailflow, and in part tls, dns and icmp).

- `Failed(kind, reason)` is raised mid-conversation and becomes a `CheckResult` once, at
  the probe's boundary (`Failed.result`), with the configured secrets redacted. Socket
  and ssl errors are translated here, where they happen; nothing else escapes.
- `hostport`: an address as a person reads it, IPv6 literals in brackets (parsed, never
  guessed from a colon).
- `open_connection`, `close_writer`: a TCP connection with its failures classified, and a
  close that never hangs.
- `Stream`: one connection with its own buffer; every read is bounded (a line by
  `MAX_LINE`). `start_tls` upgrades in place; implicit TLS is a connect plus
  `start_tls`, so both classify TLS failures alike and time connect and handshake
  apart. `close` never hangs: it aborts a socket with unsent data, one whose handshake
  failed, one whose TLS close is unanswered after `CLOSE_GRACE_S`, and on cancellation.
- `Tls`/`parse_tls`, `tls_context`, `unverified_context`: the TLS keys every stream kind
  shares, and the one context of `verify_tls = false`.

Observations a stream records: connect_s, tls_s, cert_days_left (when verified).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from agent.fields import Section
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

MAX_LINE: Final = 8192
CLOSE_GRACE_S: Final = 1.0


class Failed(Exception):
    """A classified failure of the target, raised mid-conversation, caught at the boundary."""

    def __init__(self, kind: ErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def result(self, started: float, observations: Mapping[str, float],
               secrets: Iterable[str | None] = ()) -> CheckResult:
        return CheckResult.failure(self.kind, redact(self.reason, secrets),
                                   time.perf_counter() - started, dict(observations))


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret replaced: a server may quote back what it was sent."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def show(data: bytes | str, limit: int = 80) -> str:
    """What a server sent, for a reason: bytes as a literal, text as it reads; one line,
    bounded, control characters escaped."""
    if isinstance(data, bytes):
        return repr(data[:limit]) + ("..." if len(data) > limit else "")
    text = data.strip()
    cut = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])
    return cut + ("..." if len(text) > limit else "")


def hostport(host: str, port: int) -> str:
    """`host:port` as people and URLs write it: an IPv6 literal (zone included) in brackets.

    Decided by parsing the address, not by looking for a colon: a name is never
    bracketed, and "::ffff:10.0.0.1" or "fe80::1%eth0" are.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    return f"[{host}]:{port}" if address.version == 6 else f"{host}:{port}"


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tls:
    implicit: bool = False  # TLS from the first byte (`tls = true`)
    ca_file: str | None = None
    verify: bool = True
    server_name: str | None = None  # SNI and the name checked; default: the host


PLAIN: Final = Tls()


def parse_tls(sec: Section) -> Tls:
    implicit = sec.boolean("tls", False)
    verify = sec.boolean("verify_tls", True)
    ca_file = sec.optional_string("ca_file")
    if ca_file is not None:
        path = sec.base_dir / ca_file
        if not path.is_file():
            sec.error("ca_file", f"no such file: {path}")
        ca_file = str(path)
    server_name = sec.optional_string("server_name")
    return Tls(implicit, ca_file, verify, server_name)


# --- connections --------------------------------------------------------------------------


@functools.cache
def unverified_context() -> ssl.SSLContext:
    """The context of `verify_tls = false`: encrypts and reads the certificate, trusts
    anything. One per process (a context costs a CA load only when it verifies)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_context(ctx: ProbeContext, tls: Tls) -> ssl.SSLContext:
    return ctx.ssl_context(tls.ca_file) if tls.verify else unverified_context()


def ssl_detail(err: OSError) -> str:
    # str(SSLError) carries OpenSSL noise ("[SSL: X] x (_ssl.c:1000)").
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason.lower().replace("_", " ")
    return err.strerror or type(err).__name__


async def open_connection(host: str, port: int
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection, or `Failed` (dns, connect) saying why there is none."""
    address = hostport(host, port)
    try:
        # open_connection closes its socket itself if it fails or is cancelled.
        return await asyncio.open_connection(host, port)
    except socket.gaierror as exc:  # before OSError: gaierror is one
        raise Failed(ErrorKind.DNS,
                     f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise Failed(ErrorKind.CONNECT, f"connection refused by {address}") from None
    except OSError as exc:
        raise Failed(ErrorKind.CONNECT,
                     f"cannot connect to {address}: {exc.strerror or exc}") from None


async def close_writer(writer: asyncio.StreamWriter, *, graceful: bool) -> None:
    """Close without ever hanging. Not `graceful` (unsent data a peer will not read, a
    failed handshake after which asyncio dropped the socket already): abort at once.
    Else a TLS close waits for the peer's close_notify, at most `CLOSE_GRACE_S`."""
    transport = writer.transport
    if not graceful:
        transport.abort()
        return
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await writer.wait_closed()
    except TimeoutError:
        transport.abort()
    except asyncio.CancelledError:
        transport.abort()
        raise
    except OSError:
        pass  # the peer reset first: closed either way


class Stream:
    """One connection, read through a bounded buffer of our own.

    Our own buffer (not StreamReader.readline) because it lets `start_tls` refuse to
    upgrade while plaintext bytes are still unread: bytes the server (or someone in
    the middle) sent before TLS must never be taken as if they came over TLS.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 label: str, address: str) -> None:
        self._reader, self._writer = reader, writer
        self.label = label  # "SMTP server": who speaks in a reason
        self.address = address
        self._buf = bytearray()
        self._broken = False  # a failed TLS handshake: asyncio already dropped the socket
        self._closed = False
        self.bytes_read = 0
        self.observations: dict[str, float] = {}

    @classmethod
    async def open(cls, host: str, port: int, label: str) -> Stream:
        started = time.perf_counter()
        reader, writer = await open_connection(host, port)
        stream = cls(reader, writer, label, hostport(host, port))
        stream.observations["connect_s"] = time.perf_counter() - started
        return stream

    @property
    def is_tls(self) -> bool:
        return self._writer.get_extra_info("ssl_object") is not None

    async def start_tls(self, context: ssl.SSLContext, server_name: str) -> None:
        if self._buf:
            raise Failed(ErrorKind.PROTOCOL,
                         f"{self.label} sent {show(bytes(self._buf))} before TLS started: "
                         "not upgrading a connection with unread plaintext")
        started = time.perf_counter()
        try:
            await self._writer.start_tls(context, server_hostname=server_name)
        except ssl.SSLCertVerificationError as exc:
            reason = f"TLS certificate of {self.address} not trusted: {exc.verify_message}"
        except ssl.SSLError as exc:
            reason = f"TLS handshake with {self.address} failed: {ssl_detail(exc)}"
        except OSError as exc:
            reason = (f"TLS handshake with {self.address} failed: connection broken "
                      f"({exc.strerror or type(exc).__name__})")
        except BaseException:
            self._broken = True
            raise
        else:
            self.observations["tls_s"] = time.perf_counter() - started
            self._note_certificate()
            return
        self._broken = True
        raise Failed(ErrorKind.TLS, reason)

    def _note_certificate(self) -> None:
        obj = self._writer.get_extra_info("ssl_object")
        cert = obj.getpeercert() if isinstance(obj, ssl.SSLObject) else None
        not_after = cert.get("notAfter") if cert else None  # only when it was verified
        if isinstance(not_after, str):
            left = ssl.cert_time_to_seconds(not_after) - time.time()
            self.observations["cert_days_left"] = left / 86400

    async def _read(self, limit: int) -> bytes:
        try:
            chunk = await self._reader.read(limit)
        except ssl.SSLError as exc:
            raise Failed(ErrorKind.TLS,
                         f"TLS error on the connection to {self.address}: {ssl_detail(exc)}"
                         ) from None
        except OSError as exc:
            raise self._broken_off(exc) from None
        self.bytes_read += len(chunk)
        return chunk

    def _broken_off(self, exc: OSError) -> Failed:
        return Failed(ErrorKind.PROTOCOL, f"connection to {self.address} broken: "
                                          f"{exc.strerror or type(exc).__name__}")

    def _take(self, size: int) -> bytes:
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    async def _fill(self, limit: int, what: str) -> None:
        """Read one more chunk into the buffer; EOF is a hang-up in the middle of `what`."""
        chunk = await self._read(limit)
        if not chunk:
            if self._buf:
                raise Failed(ErrorKind.PROTOCOL, f"{self.label} hung up in the middle of "
                                                 f"{what}: {show(bytes(self._buf))}")
            raise Failed(ErrorKind.PROTOCOL, f"{self.label} hung up before sending {what}")
        self._buf += chunk

    async def read_some(self, limit: int) -> bytes:
        """Up to `limit` bytes (what is buffered first); b"" at EOF."""
        return self._take(limit) if self._buf else await self._read(limit)

    async def readline(self, what: str, limit: int = MAX_LINE) -> bytes:
        """One line, its b"\\n" included; `what` names it in a reason ("the banner")."""
        # Bounded: every turn returns, raises, or grows the buffer by >= 1 byte.
        for _ in range(limit + 1):
            end = self._buf.find(b"\n")
            if end >= 0:
                return self._take(end + 1)
            if len(self._buf) >= limit:
                raise Failed(ErrorKind.PROTOCOL,
                             f"{self.label} sent a line longer than {limit} bytes in {what}")
            await self._fill(limit - len(self._buf), what)
        raise AssertionError("unreachable: the loop above is bounded by `limit`")

    async def readexactly(self, size: int, what: str) -> bytes:
        for _ in range(size + 1):  # bounded as readline
            if len(self._buf) >= size:
                return self._take(size)
            await self._fill(size - len(self._buf), what)
        raise AssertionError("unreachable: the loop above is bounded by `size`")

    async def send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:  # reset / broken pipe on an established connection
            raise self._broken_off(exc) from None

    async def close(self) -> None:
        """Close without ever hanging (see the module docstring); idempotent."""
        if self._closed:
            return
        self._closed = True
        # A peer that reads nothing keeps our buffer full and a graceful close would
        # wait for it forever; after a failed handshake asyncio has dropped the socket
        # and would never report the close.
        graceful = not (self._broken or self._writer.transport.get_write_buffer_size())
        await close_writer(self._writer, graceful=graceful)
