"""TLS probe: the certificate of any TLS service (web, mail on 465/993, POS gateways, ...).

Contract (see checks/base.py): `probe(spec, ctx)` opens one TCP connection, completes
one TLS handshake, reads the server's certificate and closes; it never raises for a
failing target, never sleeps or retries, and leaves the deadline to the scheduler. The
socket is closed on every exit, cancellation included.

Failure classification:
  dns        the host name does not resolve
  connect    no TCP connection (refused, unreachable, ...)
  tls        no handshake (not a TLS port, hang-up), a chain that is not trusted, a
             certificate for another name ("certificate is for X, not Y"), expired or
             not yet valid (with the date)
  assertion  valid, but expires within `min_days_left` days
A certificate that expires within `warn_days` passes, marked degraded.
(timeout is the scheduler's, see `run_with_deadline`.)

When OpenSSL rejects the certificate, the handshake ends before the certificate can be
read; to name the date or the names in the reason, the probe then opens a second
connection that only inspects (no verification). That costs one more handshake, only
on a failing check, and is bounded by INSPECT_LIMIT_S of its own so that a diagnostic
never turns a TLS failure into a timeout; if it fails, the reason is OpenSSL's words.

Observations: connect_s, tls_s, cert_days_left (fractional, negative once expired) and
cert_fingerprint: SHA-256 of the certificate's public key (its DER SubjectPublicKeyInfo,
what key pinning pins), cut to its first 52 bits as an integer-valued float (exact in a
float; observations are floats). Detection turns a change of it into an incident. It
is the key's, not the whole certificate's, so that a renewal which keeps the key
(certbot --reuse-key, most commercial renewals) is no alarm, while another key -- a
different certificate served, a new key -- is.

The certificate is decoded by checks/_x509.py, not by the ssl module: `getpeercert()`
returns nothing without verification, and `verify_tls = false` must still see dates and
names.

Config keys:
  host           name or address (IPv6 literals as they are, no brackets)
  port           1-65535 (default 443)
  server_name    the name sent (SNI) and checked against the certificate (default: host)
  verify_tls     verify the chain and the name (default true); false only inspects
  ca_file        PEM bundle to trust instead of the system store (private CAs)
  min_days_left  fewer days left than this is a failure (default 14)
  warn_days      fewer days left than this is degraded (default 30, >= min_days_left)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Final

from agent.fields import Section
from checks import _input
from checks._net import (
    Failed,
    close_writer,
    hostport,
    open_connection,
    ssl_detail,
    unverified_context,
)
from checks._x509 import Cert, fingerprint52, parse_cert
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

INSPECT_LIMIT_S: Final = 2.0
_DAY: Final = 86400.0
# OpenSSL's X509_V_ERR_* codes that the reason explains with the certificate in hand.
_EXPIRED, _NOT_YET_VALID, _HOSTNAME, _IP = 10, 9, 62, 64


@dataclass(frozen=True, slots=True)
class TlsSpec:
    host: str
    port: int = 443
    server_name: str | None = None
    verify: bool = True
    ca_file: str | None = None
    min_days_left: int = 14
    warn_days: int = 30


def parse(sec: Section) -> TlsSpec:
    host = _input.host(sec)
    port = sec.integer("port", 443, low=1, high=65535)
    server_name = sec.optional_string("server_name")
    verify = sec.boolean("verify_tls", True)
    ca_file = sec.optional_string("ca_file")
    if ca_file is not None:
        if not verify:
            sec.error("ca_file", "only used with verify_tls = true")
        elif not (sec.base_dir / ca_file).is_file():
            sec.error("ca_file", f"no such file: {sec.base_dir / ca_file}")
        ca_file = str(sec.base_dir / ca_file)
    min_days = sec.integer("min_days_left", 14, low=0, high=3650)
    warn_days = sec.integer("warn_days", max(30, min_days), low=0, high=3650)
    if warn_days < min_days:
        sec.error("warn_days", f"must be >= min_days_left ({min_days}), got {warn_days}")
    return TlsSpec(host, port, server_name, verify, ca_file, min_days, warn_days)


def target(spec: TlsSpec) -> str:
    return hostport(spec.host, spec.port)


async def probe(spec: TlsSpec, ctx: ProbeContext) -> CheckResult:
    """One handshake; every failing outcome is a `CheckResult`, see the module docstring."""
    started = time.perf_counter()
    observations: dict[str, float] = {}
    context = ctx.ssl_context(spec.ca_file) if spec.verify else unverified_context()
    try:
        der, version = await _handshake(spec, context, observations)
    except Failed as failed:
        return CheckResult.failure(failed.kind, failed.reason, time.perf_counter() - started,
                                   observations)
    except ssl.SSLCertVerificationError as exc:
        reason = await _not_trusted(spec, exc, observations)
        return CheckResult.failure(ErrorKind.TLS, reason, time.perf_counter() - started,
                                   observations)
    latency = time.perf_counter() - started
    try:
        cert = parse_cert(der)
    except ValueError as exc:
        return CheckResult.failure(ErrorKind.TLS, f"certificate cannot be decoded: {exc}",
                                   latency, observations)
    _observe(cert, observations)
    now = time.time()
    if now < cert.not_before:
        return CheckResult.failure(ErrorKind.TLS, f"certificate is not valid before "
                                   f"{_date(cert.not_before)}", latency, observations)
    days = (cert.not_after - now) / _DAY
    if days < 0:
        return CheckResult.failure(ErrorKind.TLS, _expired(cert, now), latency, observations)
    expires = f"certificate expires {_in_days(days)} ({_date(cert.not_after)})"
    if days < spec.min_days_left:
        return CheckResult.failure(ErrorKind.ASSERTION, expires, latency, observations)
    if days < spec.warn_days:
        return CheckResult.success(latency, expires, observations, degraded=True)
    return CheckResult.success(
        latency, f"certificate valid until {_date(cert.not_after)} ({int(days)} days), "
                 f"issued by {cert.issuer}, {version}", observations)


async def _handshake(spec: TlsSpec, context: ssl.SSLContext, observations: dict[str, float]
                     ) -> tuple[bytes, str]:
    """Connect, handshake, read the certificate, close: (DER certificate, TLS version).

    Raises `Failed`, or `ssl.SSLCertVerificationError` for the caller to explain.
    """
    address = target(spec)
    started = time.perf_counter()
    _, writer = await open_connection(spec.host, spec.port)
    observations["connect_s"] = time.perf_counter() - started
    handshaken = False
    try:
        started = time.perf_counter()
        await writer.start_tls(context, server_hostname=spec.server_name or spec.host)
        handshaken = True
        observations["tls_s"] = time.perf_counter() - started
        obj = writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if isinstance(obj, ssl.SSLObject) else None
        if not der:
            raise Failed(ErrorKind.TLS, f"{address} sent no certificate")
        return der, str(obj.version())
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as exc:
        raise Failed(ErrorKind.TLS, f"TLS handshake with {address} failed: "
                                    f"{_ssl_detail(exc)}") from None
    except OSError as exc:  # reset, or EOF, in the middle of the handshake
        raise Failed(ErrorKind.TLS, f"{address} closed the connection during the TLS "
                                    f"handshake ({exc.strerror or type(exc).__name__})") from None
    finally:
        await close_writer(writer, graceful=handshaken)


async def _not_trusted(spec: TlsSpec, exc: ssl.SSLCertVerificationError,
                       observations: dict[str, float]) -> str:
    """The reason for a rejected certificate, with its dates and names when they can be read."""
    code, message = exc.verify_code, exc.verify_message or _ssl_detail(exc)
    cert: Cert | None = None
    try:
        async with asyncio.timeout(INSPECT_LIMIT_S):
            der, _ = await _handshake(spec, unverified_context(), {})
        cert = parse_cert(der)
    except (Failed, ssl.SSLError, ValueError, TimeoutError):
        pass
    if cert is None:
        return f"TLS certificate of {target(spec)} not trusted: {message}"
    _observe(cert, observations)
    name = spec.server_name or spec.host
    if code in (_HOSTNAME, _IP):
        names = ", ".join(cert.names[:5]) + (f" and {len(cert.names) - 5} more"
                                            if len(cert.names) > 5 else "")
        return f"certificate is for {names or 'no name'}, not {name}"
    now = time.time()
    if code == _EXPIRED and cert.not_after < now:
        return _expired(cert, now)
    if code == _NOT_YET_VALID and cert.not_before > now:
        return f"certificate is not valid before {_date(cert.not_before)}"
    return f"TLS certificate of {target(spec)} not trusted: {message} (issued by {cert.issuer})"


def _observe(cert: Cert, observations: dict[str, float]) -> None:
    observations["cert_days_left"] = (cert.not_after - time.time()) / _DAY
    observations["cert_fingerprint"] = fingerprint52(cert.public_key)


def _expired(cert: Cert, now: float) -> str:
    ago = int((now - cert.not_after) // _DAY)
    when = "less than a day ago" if ago == 0 else f"{ago} day{'s' * (ago != 1)} ago"
    return f"certificate expired on {_date(cert.not_after)} ({when})"


def _in_days(days: float) -> str:
    whole = int(days)
    return "within a day" if whole == 0 else f"in {whole} day{'s' * (whole != 1)}"


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _ssl_detail(err: ssl.SSLError) -> str:
    detail = ssl_detail(err)
    if err.reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                      "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
        detail += " (the server does not speak TLS on this port)"
    return detail


