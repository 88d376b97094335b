"""HTTP(S) probe: status, body assertions, JSON conditions, auth, latency, phases, TLS expiry.

Contract (see checks/base.py): `probe(spec, ctx)` makes one request through the runner's
shared session and returns a `CheckResult`; it never raises for a failing target, never
sleeps or retries, leaves the deadline to the scheduler, and is cancellation-safe (the
response lives in an `async with`: a cancelled probe releases and closes its connection).

Failure classification (translated once, in `_translate`):
  dns        the host name does not resolve
  connect    no TCP connection (refused, unreachable, ...)
  tls        handshake failed, certificate not trusted, host name mismatch
  protocol   connected, but no valid HTTP answer: garbage, hang-up, broken body,
             reset after connecting, redirect loop (more than 10)
  assertion  a valid answer that fails the check: status, keyword(_absent), regex, json
Slower than `max_latency` passes, marked degraded: a slow shop is not a closed shop.
(timeout is the scheduler's, see `run_with_deadline`.)

latency_s is the time to the response headers (after redirects). Observations:
status_code, body_bytes_read; for https tls_cert_days_left (of the last hop's
certificate); with `fingerprint` content_fingerprint; with `phase_timings` dns_s,
connect_s, tls_s, first_byte_s (summed over redirect hops).

Cost per run matters (thousands of runs a minute): everything is parsed once (the URL
into a yarl.URL, the Authorization header built, regexes compiled, JSON conditions into
paths; checks/_httpspec.py), and the default request carries no tracing. How the
certificate is read and why phases are opt-in: checks/_httptrace.py. The body:
checks/_httpbody.py; JSON conditions: checks/_httpjson.py.

Config keys (all validated at load by `parse`; see also config.example.toml):
  url              http:// or https:// URL (required)
  method           GET, HEAD, POST, ... (default GET)
  headers          table of extra request headers
  body             request body (not with GET/HEAD); content_type: its media type
                   (default application/json when the body is JSON, else text/plain)
  expect_status    codes and classes ("2xx"); a list or one; default: any 2xx
  keyword          text the body must contain; keyword_absent: text it must not
  regex            a regular expression (RE2 syntax, see checks/_input.py) that must match
  json             conditions on the JSON body: '$.status == "ok"', '$.queue.depth < 100'
  max_latency      duration; slower than this is degraded
  username, password (or password_file, ${ENV}): basic auth;
  bearer_token (or bearer_token_file, ${ENV}): bearer auth; never shown anywhere
  verify_tls       verify the certificate chain and host name (default true)
  ca_file          PEM bundle to trust instead of the system store (private CAs)
  follow_redirects follow 3xx responses (default true, at most 10)
  max_body         how much of the body is read at most (default "1MiB"); the rest is
                   never downloaded, so a huge or endless response costs nothing
  phase_timings    observe dns_s, connect_s, tls_s, first_byte_s (default false)
  fingerprint      observe content_fingerprint: SHA-256 of the body read minus every match
                   of the `fingerprint_ignore` regexes (dynamic parts: tokens, clocks), cut
                   to its first 52 bits, as an integer-valued float (exact in a float)

Text (keyword, regex, fingerprint_ignore) is matched against the raw body bytes (after
gzip/deflate decoding) as UTF-8; regexes are RE2 (linear time; no backreferences or
look-around), \\w and [...] classes ASCII-only.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import replace

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from checks import _httpbody as body_
from checks._httpspec import HttpSpec, parse
from checks._httptrace import WATCH, Phases, Watch, note_certificate, tls_context, traced
from checks._net import hostport
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

_MAX_REDIRECTS = 10

__all__ = ["HttpSpec", "parse", "probe", "target"]


def target(spec: HttpSpec) -> str:
    url = spec._url
    return str(url.with_password("***")) if url.password else spec.url


async def probe(spec: HttpSpec, ctx: ProbeContext) -> CheckResult:
    """One request; every failing outcome is a `CheckResult`, see the module docstring."""
    watch = Watch()
    token = WATCH.set(watch)
    try:
        if not spec.phase_timings:
            return await _request(spec, ctx.http_session(), watch, None)
        phases = Phases(watch)
        session = traced(ctx.http_session())
        try:
            result = await _request(spec, session, watch, phases)
        finally:
            await session.close()  # not the connector: the session does not own it
        return replace(result, observations={**result.observations, **phases.observations()})
    finally:
        WATCH.reset(token)


async def _request(spec: HttpSpec, session: aiohttp.ClientSession, watch: Watch,
                   phases: Phases | None) -> CheckResult:
    observations: dict[str, float] = {}
    started = time.perf_counter()
    try:
        # `async with` releases the response on every exit, cancellation included;
        # with the runner's force_close connector a release closes the socket.
        async with session.request(
            spec.method, spec._url, headers=spec._send_headers, data=spec.body,
            ssl=tls_context(spec.verify_tls, spec.ca_file),
            allow_redirects=spec.follow_redirects, max_redirects=_MAX_REDIRECTS,
            trace_request_ctx=phases,
        ) as resp:
            latency = time.perf_counter() - started
            observations["status_code"] = float(resp.status)
            if resp.url.scheme == "https":
                note_certificate(watch, observations)
            if not _status_ok(spec, resp.status):
                return CheckResult.failure(
                    ErrorKind.ASSERTION,
                    f"HTTP {resp.status} {resp.reason or ''}".rstrip()
                    + f", expected {_expected(spec)}",
                    latency, observations,
                )
            body = await body_.read(spec, resp)
            # Drop the connection now, whatever of the body is left unread: it is never
            # downloaded. (A release would close it too, under force_close; say it here.)
            resp.close()
    except aiohttp.ClientError as exc:
        kind, reason = _translate(exc, spec)
        return CheckResult.failure(kind, reason, time.perf_counter() - started, observations)
    # Outside aiohttp's wrapping (rare): an error on an established connection.
    except ssl.SSLError as exc:
        return CheckResult.failure(
            ErrorKind.TLS, f"TLS error: {_ssl_detail(exc)}", time.perf_counter() - started,
            observations,
        )
    except OSError as exc:
        return CheckResult.failure(
            ErrorKind.PROTOCOL, f"connection broken: {exc.strerror or _first_line(exc)}",
            time.perf_counter() - started, observations,
        )
    observations["body_bytes_read"] = float(body.size)
    if spec.fingerprint and body.data is not None:
        observations["content_fingerprint"] = body_.fingerprint(spec, body.data)
    failed = body_.failed(spec, body)
    if failed is not None:
        return CheckResult.failure(ErrorKind.ASSERTION, failed, latency, observations)
    if spec.max_latency is not None and latency > spec.max_latency:
        return CheckResult.success(
            latency, f"responded in {latency:.2f}s, over the {spec.max_latency:g}s limit",
            observations, degraded=True)
    return CheckResult.success(latency, f"HTTP {resp.status}", observations)


def _status_ok(spec: HttpSpec, status: int) -> bool:
    return status in spec.expect_status if spec.expect_status else 200 <= status <= 299


def _expected(spec: HttpSpec) -> str:
    if not spec.expect_status:
        return "2xx"
    parts: list[str] = []
    for hundred in range(100, 600, 100):
        codes = sorted(c for c in spec.expect_status if hundred <= c < hundred + 100)
        whole = len(codes) == 100
        parts += [f"{hundred // 100}xx"] if whole else [str(c) for c in codes]
    return parts[0] if len(parts) == 1 else "one of " + ", ".join(parts)


def _translate(exc: aiohttp.ClientError, spec: HttpSpec) -> tuple[ErrorKind, str]:
    """aiohttp's exception tree -> (ErrorKind, reason). Order matters: subclasses first.

    CONNECT means no TCP connection could be made; anything that goes wrong after the
    connection exists (hang-up, reset, garbage) is PROTOCOL: the port answers, the
    service behind it does not speak HTTP properly.
    """
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        err = exc.certificate_error
        detail = getattr(err, "verify_message", None) or getattr(err, "reason", None) or err
        return ErrorKind.TLS, f"TLS certificate verify failed: {detail}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return ErrorKind.TLS, f"TLS handshake with {_addr(exc)} failed: {_ssl_detail(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS, f"cannot resolve host {exc.host!r}: {exc.os_error.strerror or exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return ErrorKind.CONNECT, f"connection refused by {_addr(exc)}"
        return ErrorKind.CONNECT, f"cannot connect to {_addr(exc)}: {exc.os_error.strerror or exc}"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return ErrorKind.TLS, "TLS certificate fingerprint mismatch"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ErrorKind.PROTOCOL, f"more than {_MAX_REDIRECTS} redirects (a redirect loop?)"
    if isinstance(exc, aiohttp.RedirectClientError):
        return ErrorKind.PROTOCOL, f"unusable redirect target: {exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorKind.PROTOCOL, "server closed the connection without a complete HTTP answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorKind.PROTOCOL, f"response body broken off: {_parser_detail(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # The response parser's errors: a status line or headers that are not HTTP.
        return ErrorKind.PROTOCOL, f"not a valid HTTP answer: {_parser_detail(exc)}"
    if isinstance(exc, aiohttp.ClientOSError):
        return ErrorKind.PROTOCOL, f"connection broken: {exc.strerror or _first_line(exc)}"
    return ErrorKind.PROTOCOL, f"{type(exc).__name__}: {_first_line(exc) or target(spec)}"


def _addr(exc: aiohttp.ClientConnectorError) -> str:
    return hostport(exc.host, exc.port) if exc.port is not None else exc.host


def _ssl_detail(err: OSError) -> str:
    # ssl.SSLError's str() carries OpenSSL noise ("[SSL: X] x (_ssl.c:1000)").
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason.lower().replace("_", " ")
    return err.strerror or _first_line(err)


def _parser_detail(exc: aiohttp.ClientError) -> str:
    """The HTTP parser's own message, which quotes what the server sent, on one line."""
    cause = exc.__cause__
    if isinstance(cause, HttpProcessingError) and cause.message:
        text = cause.message
    else:
        text = exc.message if isinstance(exc, aiohttp.ClientResponseError) else str(exc)
    # Drop the parser's "    ^" pointer lines; keep the quoted bytes.
    parts = [line.strip() for line in text.splitlines() if line.strip().strip("^")]
    return " ".join(parts)[:200]


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0][:200] if lines else ""
