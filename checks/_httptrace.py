"""What the http probe sees of a request besides the response: the server's certificate
and, when asked for, the time of each phase. Plumbing for checks/http.py, not a kind.

Both are built to cost (almost) nothing on the default path, which runs thousands of
times a minute:

- The certificate. aiohttp gives the connection back as soon as a small body has
  arrived, often before `request()` returns, so the response cannot be asked for its
  peer certificate. Instead the probe's TLS contexts (`WatchingContext`, made once per
  verify/ca_file) note the `SSLObject` they create in `WATCH`, a context variable the
  probe sets for its own task: asyncio calls `wrap_bio` in the task that opens the
  connection, so concurrent probes never see each other's. After the headers the probe
  reads the certificate from that object (DER, decoded by checks/_x509.py). Cost: one
  Python-level method call per handshake and ~10 µs per https request.
- Phases (dns_s, connect_s, tls_s, first_byte_s) need an aiohttp TraceConfig, and a
  session that carries one makes every request pay for it (5-10% more CPU per plain
  request, measured, even with callbacks that return at once). So they are opt-in per
  check: such a request goes through `traced(shared)`, a throwaway ClientSession (a few
  µs to make and close) over the runner's shared connector, carrying the trace; its
  `trace_request_ctx` is the request's `Phases`. Nothing else pays.

Phases are summed over redirect hops, so dns + connect + tls + first_byte is about
latency_s (less aiohttp's own overhead): dns_s is 0 for an address or a cached name;
tls_s starts when the TCP connection is up (the context wraps the socket) and ends
with the connection; first_byte_s runs from the request headers sent to the response
headers received (the server's think time plus one round trip).
"""

from __future__ import annotations

import contextvars
import functools
import ssl
import time
from types import SimpleNamespace
from typing import Any, Final

import aiohttp

from checks._x509 import cert_not_after


class Watch:
    """What `WatchingContext` saw for the request of the task that set it."""

    __slots__ = ("ssl_object", "tls_started")

    def __init__(self) -> None:
        self.ssl_object: ssl.SSLObject | None = None
        self.tls_started = 0.0


WATCH: Final[contextvars.ContextVar[Watch | None]] = contextvars.ContextVar(
    "onwatch_http_watch", default=None)


class WatchingContext(ssl.SSLContext):
    """An SSLContext that hands the SSLObject of each new connection to the probe."""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        watch = WATCH.get()
        if watch is not None:
            watch.ssl_object, watch.tls_started = obj, time.perf_counter()
        return obj


@functools.cache
def tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """Like aiohttp's own contexts (and ProbeContext.ssl_context): made once, cached."""
    context = WatchingContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs()
    context.set_alpn_protocols(["http/1.1"])
    return context


def note_certificate(watch: Watch, observations: dict[str, float]) -> None:
    """tls_cert_days_left of the last TLS connection the request made."""
    obj = watch.ssl_object
    try:
        der = obj.getpeercert(binary_form=True) if obj is not None else None
        if der:
            observations["tls_cert_days_left"] = (cert_not_after(der) - time.time()) / 86400
    except ValueError:  # not handshaken (cannot be, after headers), or not decodable
        pass


class Phases:
    __slots__ = ("connect", "create_started", "dns", "dns_started", "first_byte", "hop_dns",
                 "sent", "tls", "watch")

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.dns = self.connect = self.tls = self.first_byte = 0.0
        self.dns_started = self.create_started = self.sent = self.hop_dns = 0.0

    def observations(self) -> dict[str, float]:
        return {"dns_s": self.dns, "connect_s": self.connect, "tls_s": self.tls,
                "first_byte_s": self.first_byte}


def _phases(trace: SimpleNamespace) -> Phases:
    phases = trace.trace_request_ctx
    assert isinstance(phases, Phases)  # only `traced` sessions carry this trace
    return phases


async def _on_create_start(_: Any, trace: SimpleNamespace, __: Any) -> None:
    p = _phases(trace)
    p.create_started, p.hop_dns = time.perf_counter(), 0.0


async def _on_dns_start(_: Any, trace: SimpleNamespace, __: Any) -> None:
    _phases(trace).dns_started = time.perf_counter()


async def _on_dns_end(_: Any, trace: SimpleNamespace, __: Any) -> None:
    p = _phases(trace)
    took = time.perf_counter() - p.dns_started
    p.dns += took
    p.hop_dns += took


async def _on_create_end(_: Any, trace: SimpleNamespace, __: Any) -> None:
    # The span covers DNS, TCP and TLS; TLS began when our context wrapped the socket.
    p, now = _phases(trace), time.perf_counter()
    tls = now - p.watch.tls_started if p.watch.tls_started > p.create_started else 0.0
    p.tls += tls
    p.connect += max(0.0, now - p.create_started - p.hop_dns - tls)


async def _on_headers_sent(_: Any, trace: SimpleNamespace, __: Any) -> None:
    _phases(trace).sent = time.perf_counter()


async def _on_answer(_: Any, trace: SimpleNamespace, __: Any) -> None:
    p = _phases(trace)
    p.first_byte += time.perf_counter() - p.sent


def _phase_trace() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(_on_create_start)
    trace.on_dns_resolvehost_start.append(_on_dns_start)
    trace.on_dns_resolvehost_end.append(_on_dns_end)
    trace.on_connection_create_end.append(_on_create_end)
    trace.on_request_headers_sent.append(_on_headers_sent)
    trace.on_request_redirect.append(_on_answer)  # the end of a hop's wait
    trace.on_request_end.append(_on_answer)  # sent at the final headers, before the body
    return trace


_PHASE_TRACE: Final = _phase_trace()


def traced(shared: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """A throwaway session over the shared connector (not owning it), with the trace.

    Close it after the request: that only drops the session, never the connector.
    """
    return aiohttp.ClientSession(
        connector=shared.connector, connector_owner=False, headers=shared.headers,
        timeout=shared.timeout, auto_decompress=shared.auto_decompress,
        trace_configs=[_PHASE_TRACE])
