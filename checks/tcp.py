"""TCP probe: connect, optionally send bytes and expect bytes back (POS terminals, gateways).

Config keys:
  host        name or address (IPv6 literals as they are, no brackets)
  port        1-65535
  send        text sent after connecting (TOML escapes such as "\r\n" work)
  expect      text that must appear in what the server sends back
  max_read    how much is read at most while waiting for `expect` (default "64KiB")

Contract (see checks/base.py): `probe(spec, ctx)` connects, writes `send` (if any),
then, if `expect` is set, reads chunks until `expect` appears, `max_read` bytes
have been read, or the server closes. It returns a `CheckResult`, never raises for
a failing target, never sleeps or retries; the scheduler owns the deadline. The
socket is closed on every exit, cancellation included (try/finally).

Failure classification:
  dns        the host name does not resolve
  connect    no TCP connection (refused, unreachable, ...)
  protocol   connected, but the server hung up (EOF or reset) before sending a
             single byte while we waited for `expect`, or reset while we sent
  assertion  the server answered, but `expect` is not in what it sent (before
             EOF, or within the first `max_read` bytes)
(timeout is the scheduler's, see `run_with_deadline`.)

latency_s covers the whole exchange: connect, send, and the read up to the match.
Observations: bytes_read.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from agent.fields import Section
from checks.base import CheckResult, ErrorKind, ProbeContext


@dataclass(frozen=True, slots=True)
class TcpSpec:
    host: str
    port: int
    send: bytes = b""
    expect: bytes = b""
    max_read: int = 64 * 1024


def parse(sec: Section) -> TcpSpec:
    host = sec.string("host")
    port = sec.integer("port", low=1, high=65535)
    send = sec.string("send", "", nonempty=False).encode()
    expect = sec.string("expect", "", nonempty=False).encode()
    max_read = sec.size("max_read", 64 * 1024)
    return TcpSpec(host, port, send, expect, max_read)


def target(spec: TcpSpec) -> str:
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"{host}:{spec.port}"


async def probe(spec: TcpSpec, ctx: ProbeContext) -> CheckResult:
    """One connection and exchange; see the module docstring for the classification."""
    started = time.perf_counter()
    try:
        # open_connection closes its socket itself if it fails or is cancelled.
        reader, writer = await asyncio.open_connection(spec.host, spec.port)
    except socket.gaierror as exc:  # before OSError: gaierror is one
        return CheckResult.failure(
            ErrorKind.DNS, f"cannot resolve host {spec.host!r}: {exc.strerror or exc}",
            time.perf_counter() - started,
        )
    except ConnectionRefusedError:
        return CheckResult.failure(
            ErrorKind.CONNECT, f"connection refused by {target(spec)}",
            time.perf_counter() - started,
        )
    except OSError as exc:
        return CheckResult.failure(
            ErrorKind.CONNECT, f"cannot connect to {target(spec)}: {exc.strerror or exc}",
            time.perf_counter() - started,
        )
    try:
        return await _exchange(spec, reader, writer, started)
    except OSError as exc:  # reset / broken pipe on an established connection
        return CheckResult.failure(
            ErrorKind.PROTOCOL,
            f"connection to {target(spec)} broken: {exc.strerror or type(exc).__name__}",
            time.perf_counter() - started,
        )
    finally:
        await _close(writer)


async def _exchange(spec: TcpSpec, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    started: float) -> CheckResult:
    if spec.send:
        writer.write(spec.send)
        await writer.drain()
    if not spec.expect:
        return CheckResult.success(time.perf_counter() - started, "connected")
    # Bounded: every turn reads at least one byte or ends at EOF, and never past
    # max_read. Only the bytes read are kept (at most max_read).
    buf = bytearray()
    while len(buf) < spec.max_read:
        chunk = await reader.read(spec.max_read - len(buf))
        if not chunk:
            break
        # Search only where a match could start now: the last len(expect)-1 old bytes.
        start = max(0, len(buf) - len(spec.expect) + 1)
        buf += chunk
        if buf.find(spec.expect, start) >= 0:
            return CheckResult.success(
                time.perf_counter() - started, f"got {_show(spec.expect)}",
                {"bytes_read": float(len(buf))},
            )
    latency = time.perf_counter() - started
    observations = {"bytes_read": float(len(buf))}
    if not buf:
        # Nothing at all: the service accepted and hung up, it did not answer wrongly.
        return CheckResult.failure(
            ErrorKind.PROTOCOL, f"{target(spec)} closed the connection without sending anything",
            latency, observations,
        )
    where = (f"the first {len(buf)} bytes" if len(buf) >= spec.max_read
             else f"the {len(buf)} bytes")
    return CheckResult.failure(
        ErrorKind.ASSERTION,
        f"expected {_show(spec.expect)} not in {where} the server sent "
        f"(it began {_show(bytes(buf[:40]))})",
        latency, observations,
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close without ever hanging: a peer that reads nothing keeps our write buffer full,
    and a graceful close would wait for it forever, so such a socket is aborted."""
    transport = writer.transport
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        writer.close()
    try:
        await writer.wait_closed()
    except asyncio.CancelledError:
        transport.abort()
        raise
    except OSError:
        pass  # the peer reset first: closed either way


def _show(data: bytes, limit: int = 40) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")
