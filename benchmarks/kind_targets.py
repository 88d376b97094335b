"""Cheap loopback targets for the non-http check kinds of the throughput benchmark.

    python3 benchmarks/kind_targets.py --dir DIR [--serve tcp,tls,dns,smtp] [--max-seconds 1800]

One process, 127.0.0.1 only, one event loop (uvloop when installed). It prints one JSON
line on stdout once everything listens:
`{"pid": N, "tcp": PORT, "tls": PORT, "dns": PORT, "smtp": PORT, "ca_file": "DIR/ca.pem"}`
(only the services asked for). Services:

    tcp    a POS-terminal-like line protocol: reads until "PING" arrives, answers
           "PONG\\r\\n" and closes (a tcp check `send = "PING\\r\\n"`, `expect = "PONG"`)
    tls    the same protocol behind TLS with a certificate for 127.0.0.1 and localhost
           from a `trustme` CA made at start (the CA's PEM is written to DIR/ca.pem,
           the file a check's `ca_file` names); a tls check handshakes and hangs up
    dns    a UDP DNS responder built with dnspython: every query gets NOERROR and one
           A record 192.0.2.10 (TTL 300) for the name asked (`resolver = "127.0.0.1:PORT"`)
    smtp   aiosmtpd offering STARTTLS (same certificate), accepting any RCPT; DATA is
           refused (the smtp kind never sends one: it ends with RSET and QUIT)

aiosmtpd's STARTTLS re-plumbs asyncio's own SSLProtocol under the transport, which is
not meant for uvloop's transports: with smtp served, the loop is the stock asyncio one.

Bounded: exits by itself after --max-seconds, and on SIGTERM/SIGINT. Every connection is
closed after --conn-max seconds at the latest (a client that never sends "PING").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

PONG = b"PONG\r\n"
MAX_LINE = 4096
A_RECORD = "192.0.2.10"


class PingPong(asyncio.Protocol):
    """One connection: wait for PING (at most MAX_LINE bytes), answer PONG, close."""

    conn_max = 30.0

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        self.timer = asyncio.get_running_loop().call_later(self.conn_max, transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        if b"PING" in self.buf:
            self.transport.write(PONG)
            self.transport.close()
        elif len(self.buf) > MAX_LINE:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class Dns(asyncio.DatagramProtocol):
    """Answers every well-formed query with one A record; ignores garbage."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        import dns.exception
        import dns.message
        import dns.rdataclass
        import dns.rdatatype
        import dns.rrset

        assert self.transport is not None
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        reply = dns.message.make_response(query)
        for q in query.question:
            if q.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(q.name, 300, dns.rdataclass.IN,
                                                        dns.rdatatype.A, A_RECORD))
        self.transport.sendto(reply.to_wire(), addr)


def make_tls(directory: Path) -> tuple[ssl.SSLContext, str]:
    """A trustme CA (PEM written to directory/ca.pem) and a server context for 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # Far from expiry: the tls kind must pass (not degraded), whatever its warn_days.
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    ca.issue_cert("127.0.0.1", "localhost", not_after=expires).configure_cert(server)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, str(ca_file)


async def _serve(args: argparse.Namespace, serve: set[str]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    PingPong.conn_max = args.conn_max
    out: dict[str, Any] = {"pid": os.getpid()}
    closers: list[Any] = []
    tls_ctx: ssl.SSLContext | None = None
    if serve & {"tls", "smtp"}:
        tls_ctx, out["ca_file"] = make_tls(Path(args.dir))
    if "tcp" in serve:
        server = await loop.create_server(PingPong, "127.0.0.1", 0, backlog=4096)
        closers.append(server)
        out["tcp"] = server.sockets[0].getsockname()[1]
    if "tls" in serve:
        server = await loop.create_server(PingPong, "127.0.0.1", 0, backlog=4096, ssl=tls_ctx)
        closers.append(server)
        out["tls"] = server.sockets[0].getsockname()[1]
    if "dns" in serve:
        transport, _ = await loop.create_datagram_endpoint(Dns, local_addr=("127.0.0.1", 0))
        closers.append(transport)
        out["dns"] = transport.get_extra_info("sockname")[1]
    if "smtp" in serve:
        from aiosmtpd.smtp import SMTP

        class Accept:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                return "554 5.7.1 this benchmark target accepts no messages"

        def factory() -> SMTP:
            return SMTP(Accept(), hostname="mx.bench", tls_context=tls_ctx,
                        timeout=args.conn_max, ident="onwatch-bench ESMTP")

        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=4096)
        closers.append(server)
        out["smtp"] = server.sockets[0].getsockname()[1]
    print(json.dumps(out), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    for c in closers:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="where ca.pem is written")
    ap.add_argument("--serve", default="tcp,tls,dns,smtp")
    ap.add_argument("--conn-max", type=float, default=30.0)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    args = ap.parse_args()
    serve = {s for s in args.serve.split(",") if s}
    unknown = serve - {"tcp", "tls", "dns", "smtp"}
    if unknown:
        ap.error(f"unknown services: {', '.join(sorted(unknown))}")
    if "smtp" not in serve:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(_serve(args, serve))
            return 0
    asyncio.run(_serve(args, serve))
    return 0


if __name__ == "__main__":
    sys.exit(main())
