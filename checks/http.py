"""HTTP(S) probe: status, keyword, latency limit, TLS verification, redirects, capped body read.

Contract (see checks/base.py): `probe(spec, ctx)` makes one request through the
runner's shared session and returns a `CheckResult`; it never raises for a failing
target, never sleeps or retries, and leaves the deadline to the scheduler. It is
cancellation-safe: the response lives in an `async with`, so a cancelled probe
releases (and, with the runner's force_close connector, closes) its connection.

Failure classification (translated once, in `_translate`):
  dns        the host name does not resolve
  connect    no TCP connection (refused, unreachable, ...)
  tls        handshake failed, certificate not trusted, host name mismatch
  protocol   connected, but no valid HTTP answer: garbage, hang-up, broken body,
             reset after connecting, redirect loop (more than 10)
  assertion  a valid answer that fails the check: status, keyword, max_latency
(timeout is the scheduler's, see `run_with_deadline`.)

latency_s is the time to the response headers (after redirects). Observations:
status_code, body_bytes_read. No certificate expiry: aiohttp releases the connection
(and its peer certificate) as soon as a small body has arrived, before the probe
could look; expiry is the tls check kind's business.

Config keys (all validated at load by `parse`):
  url              http:// or https:// URL (required)
  method           GET, HEAD, POST, ... (default GET)
  headers          table of extra request headers
  expect_status    list of accepted codes; default: any 2xx
  keyword          text the body must contain, as UTF-8 bytes, in the first `max_body`
                   bytes (after gzip/deflate decoding); reading stops once it is seen
  max_latency      duration; slower than this is a failure (error_kind assertion)
  verify_tls       verify the certificate chain and host name (default true)
  ca_file          PEM bundle to trust instead of the system store (private CAs)
  follow_redirects follow 3xx responses (default true, at most 10)
  max_body         how much of the body is read at most (default "1MiB"); the rest is
                   never downloaded, so a huge or endless response costs nothing
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from agent.fields import Section
from checks.base import CheckResult, ErrorKind, ProbeContext

_METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS", "PATCH", "DELETE")
_MAX_REDIRECTS = 10


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    expect_status: frozenset[int] = frozenset()  # empty: any 2xx
    keyword: str | None = None
    max_latency: float | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    follow_redirects: bool = True
    max_body: int = 1 << 20


def parse(sec: Section) -> HttpSpec:
    url = sec.url("url", ("http", "https"))
    method = sec.choice("method", _METHODS, "GET")
    headers = tuple(sec.table_of_strings("headers").items())
    for name, value in headers:
        # Caught here rather than as a ValueError (an "internal" result) on every run.
        if any(c in name + value for c in "\r\n\0") or not name.strip():
            sec.error("headers", f"header {name!r} must have a name and no line breaks")
    codes = sec.value("expect_status")
    status: frozenset[int] = frozenset()
    if codes is not None:
        if isinstance(codes, int) and not isinstance(codes, bool):
            codes = [codes]
        if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
        ):
            sec.error("expect_status",
                      f"must be a list of HTTP status codes (100-599), got {codes!r}")
        else:
            status = frozenset(codes)
    keyword = sec.optional_string("keyword")
    if keyword is not None and method == "HEAD":
        sec.error("keyword", "cannot be checked with method HEAD: a HEAD answer has no body")
    max_latency = sec.optional_duration("max_latency")
    verify = sec.boolean("verify_tls", True)
    ca_file = sec.optional_string("ca_file")
    if ca_file is not None and not (sec.base_dir / ca_file).is_file():
        sec.error("ca_file", f"no such file: {sec.base_dir / ca_file}")
    elif ca_file is not None:
        ca_file = str(sec.base_dir / ca_file)
    follow = sec.boolean("follow_redirects", True)
    max_body = sec.size("max_body", 1 << 20)
    return HttpSpec(url, method, headers, status, keyword, max_latency, verify, ca_file, follow,
                    max_body)


def target(spec: HttpSpec) -> str:
    return spec.url


async def probe(spec: HttpSpec, ctx: ProbeContext) -> CheckResult:
    """One request; every failing outcome is a `CheckResult`, see the module docstring."""
    # ssl=True is aiohttp's default verifying context; a private CA gets a context
    # cached by the runner, so no check builds an SSLContext per call.
    tls: ssl.SSLContext | bool = True
    if not spec.verify_tls:
        tls = False
    elif spec.ca_file is not None:
        tls = ctx.ssl_context(spec.ca_file)
    observations: dict[str, float] = {}
    started = time.perf_counter()
    try:
        # `async with` releases the response on every exit, cancellation included;
        # with the runner's force_close connector a release closes the socket.
        async with ctx.http_session().request(
            spec.method, spec.url, headers=spec.headers, ssl=tls,
            allow_redirects=spec.follow_redirects, max_redirects=_MAX_REDIRECTS,
        ) as resp:
            latency = time.perf_counter() - started
            observations["status_code"] = float(resp.status)
            if not _status_ok(spec, resp.status):
                return CheckResult.failure(
                    ErrorKind.ASSERTION,
                    f"HTTP {resp.status} {resp.reason or ''}".rstrip()
                    + f", expected {_expected(spec)}",
                    latency, observations,
                )
            found, size, complete = await _read_body(spec, resp)
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
    observations["body_bytes_read"] = float(size)
    if spec.keyword is not None and not found:
        where = f"the whole body ({_size(size)})" if complete else f"the first {_size(size)}"
        quoted = json.dumps(spec.keyword, ensure_ascii=False)
        return CheckResult.failure(
            ErrorKind.ASSERTION, f"keyword {quoted} not found in {where}", latency, observations,
        )
    if spec.max_latency is not None and latency > spec.max_latency:
        return CheckResult.failure(
            ErrorKind.ASSERTION,
            f"responded in {latency:.2f}s, over the {spec.max_latency:g}s limit",
            latency, observations,
        )
    return CheckResult.success(latency, f"HTTP {resp.status}", observations)


def _status_ok(spec: HttpSpec, status: int) -> bool:
    return status in spec.expect_status if spec.expect_status else 200 <= status <= 299


def _expected(spec: HttpSpec) -> str:
    if not spec.expect_status:
        return "2xx"
    codes = sorted(spec.expect_status)
    return str(codes[0]) if len(codes) == 1 else "one of " + ", ".join(map(str, codes))


async def _read_body(spec: HttpSpec, resp: aiohttp.ClientResponse) -> tuple[bool, int, bool]:
    """Read at most `max_body` bytes: (keyword found, bytes read, whole body read).

    Stops as soon as the keyword is seen. Only a tail of len(keyword)-1 bytes is kept
    between chunks (for a keyword split across two), so memory stays at one chunk.
    The loop is bounded: every turn reads at least one byte or ends at EOF.
    """
    if spec.method == "HEAD":
        return False, 0, True
    needle = spec.keyword.encode() if spec.keyword is not None else b""
    keep = len(needle) - 1
    tail, size = b"", 0
    while size < spec.max_body:
        chunk = await resp.content.read(spec.max_body - size)
        if not chunk:
            return False, size, True
        size += len(chunk)
        if needle:
            window = tail + chunk
            if needle in window:
                return True, size, False
            tail = window[-keep:] if keep else b""
    return False, size, resp.content.at_eof()


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
    return ErrorKind.PROTOCOL, f"{type(exc).__name__}: {_first_line(exc) or spec.url}"


def _addr(exc: aiohttp.ClientConnectorError) -> str:
    host = f"[{exc.host}]" if ":" in exc.host else exc.host
    return f"{host}:{exc.port}"


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


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"
