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
paths), and the default request carries no tracing. How the certificate is read and
why phases are opt-in: checks/_httptrace.py. The body: checks/_httpbody.py.

Config keys (all validated at load by `parse`; see also config.example.toml):
  url              http:// or https:// URL (required)
  method           GET, HEAD, POST, ... (default GET)
  headers          table of extra request headers
  body             request body (not with GET/HEAD); content_type: its media type
                   (default application/json when the body is JSON, else text/plain)
  expect_status    codes and classes ("2xx"); a list or one; default: any 2xx
  keyword          text the body must contain; keyword_absent: text it must not
  regex            a regular expression that must match the body
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
gzip/deflate decoding) as UTF-8; in a regex, \\w and [...] classes are ASCII-only.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
from dataclasses import dataclass, field, replace

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from agent.fields import Section, show
from checks import _httpbody as body_
from checks._httpbody import Condition
from checks._httptrace import WATCH, Phases, Watch, note_certificate, tls_context, traced
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

_METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS", "PATCH", "DELETE")
_MAX_REDIRECTS = 10
_STATUS_CLASS = re.compile(r"([1-5])xx", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str  # as written; requests use `_url`, parsed once
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    expect_status: frozenset[int] = frozenset()  # empty: any 2xx
    keyword: str | None = None
    max_latency: float | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    follow_redirects: bool = True
    max_body: int = 1 << 20
    body: bytes | None = None
    content_type: str | None = None
    keyword_absent: str | None = None
    regex: re.Pattern[bytes] | None = None
    json: tuple[Condition, ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    phase_timings: bool = False
    fingerprint: bool = False
    fingerprint_ignore: tuple[re.Pattern[bytes], ...] = ()
    # Derived once, here, never per request.
    _url: URL = field(init=False, default=URL(), repr=False, compare=False)
    _send_headers: tuple[tuple[str, str], ...] | None = field(
        init=False, default=None, repr=False, compare=False)
    _needle: bytes = field(init=False, default=b"", repr=False, compare=False)
    _unwanted: bytes = field(init=False, default=b"", repr=False, compare=False)
    _collect: bool = field(init=False, default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        send = list(self.headers)
        if self.body is not None and not any(k.lower() == "content-type" for k, _ in send):
            send.append(("Content-Type", self.content_type or _default_type(self.body)))
        if self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password}".encode()
            send.append(("Authorization", "Basic " + base64.b64encode(pair).decode("ascii")))
        elif self.bearer_token is not None:
            send.append(("Authorization", f"Bearer {self.bearer_token}"))
        setattr_ = object.__setattr__
        setattr_(self, "_url", URL(self.url))
        setattr_(self, "_send_headers", tuple(send) or None)  # None: nothing to merge
        setattr_(self, "_needle", (self.keyword or "").encode())
        setattr_(self, "_unwanted", (self.keyword_absent or "").encode())
        # Streaming (one chunk in memory) unless something needs the body whole.
        setattr_(self, "_collect", bool(self.regex or self.json or self.fingerprint))


def parse(sec: Section) -> HttpSpec:
    before = len(sec.errors)
    url_text = sec.url("url", ("http", "https"))
    try:
        url = URL(url_text) if len(sec.errors) == before else None
    except ValueError as exc:  # what urlsplit lets through and yarl does not
        sec.error("url", f"is not a valid URL ({exc})")
        url = None
    if url is None:
        url_text, url = "http://invalid/", URL("http://invalid/")
    method = sec.choice("method", _METHODS, "GET")
    headers = tuple(sec.table_of_strings("headers").items())
    for name, value in headers:
        # Caught here rather than as a ValueError (an "internal" result) on every run.
        if any(c in name + value for c in "\r\n\0") or not name.strip():
            sec.error("headers", f"header {name!r} must have a name and no line breaks")
    header_names = {name.lower() for name, _ in headers}
    status = _parse_status(sec)
    # An empty body is a body; sec.value marks the key as known when it is absent.
    body_text = sec.string("body", nonempty=False) if sec.has("body") else sec.value("body")
    if body_text is not None and method in ("GET", "HEAD"):
        sec.error("body", f"is not sent with method {method}; use POST, PUT, PATCH, ...")
    content_type = sec.optional_string("content_type")
    if content_type is not None and body_text is None:
        sec.error("content_type", "only used with body")
    elif content_type is not None and "content-type" in header_names:
        sec.error("content_type", "given in headers too; keep one")
    keyword = sec.optional_string("keyword")
    absent = sec.optional_string("keyword_absent")
    regex = _compile(sec, "regex", sec.optional_string("regex"))
    conditions = tuple(c for i, raw in enumerate(sec.string_list("json"))
                       if (c := body_.parse_condition(sec, f"json[{i}]", raw)) is not None)
    fingerprint = sec.boolean("fingerprint", False)
    ignore = tuple(p for i, raw in enumerate(sec.string_list("fingerprint_ignore"))
                   if (p := _compile(sec, f"fingerprint_ignore[{i}]", raw)) is not None)
    if ignore and not fingerprint:
        sec.error("fingerprint_ignore", "only used with fingerprint = true")
    if method == "HEAD":
        for key, used in (("keyword", keyword), ("keyword_absent", absent), ("regex", regex),
                          ("json", conditions), ("fingerprint", fingerprint)):
            if used:
                sec.error(key, "cannot be checked with method HEAD: a HEAD answer has no body")
    max_latency = sec.optional_duration("max_latency")
    verify = sec.boolean("verify_tls", True)
    ca_file = sec.optional_string("ca_file")
    if ca_file is not None and not (sec.base_dir / ca_file).is_file():
        sec.error("ca_file", f"no such file: {sec.base_dir / ca_file}")
    elif ca_file is not None:
        ca_file = str(sec.base_dir / ca_file)
    follow = sec.boolean("follow_redirects", True)
    max_body = sec.size("max_body", 1 << 20)
    username, password, token = _parse_auth(sec, url, header_names)
    phases = sec.boolean("phase_timings", False)
    return HttpSpec(
        url_text, method, headers, status, keyword, max_latency, verify, ca_file, follow, max_body,
        None if body_text is None else body_text.encode(), content_type, absent, regex,
        conditions, username, password, token, phases, fingerprint, ignore)


def _parse_status(sec: Section) -> frozenset[int]:
    raw = sec.value("expect_status")
    if raw is None:
        return frozenset()
    codes: set[int] = set()
    for item in raw if isinstance(raw, list) else [raw]:
        if isinstance(item, str) and item.isdigit():
            item = int(item)
        m = _STATUS_CLASS.fullmatch(item) if isinstance(item, str) else None
        if m is not None:
            codes.update(range(int(m.group(1)) * 100, int(m.group(1)) * 100 + 100))
        elif isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            codes.add(item)
        else:
            sec.error("expect_status", "must be HTTP status codes (100-599) or classes like "
                                       f'"2xx", got {show(raw)}')
            return frozenset()
    if not codes:
        sec.error("expect_status", "must not be empty (leave it out to accept any 2xx)")
    return frozenset(codes)


def _parse_auth(sec: Section, url: URL, header_names: set[str]
                ) -> tuple[str | None, str | None, str | None]:
    username = sec.optional_string("username")
    password = sec.secret("password")
    token = sec.secret("bearer_token")
    if username is not None and password is None:
        sec.error("password", "is required with username (or password_file)")
    if password is not None and username is None:
        sec.error("username", "is required with password")
    if username is not None and ":" in username:
        sec.error("username", "must not contain ':' (basic auth cannot carry it)")
    if token is not None and (username is not None or password is not None):
        sec.error("bearer_token", "give either username and password or bearer_token")
    # Never quote these back: say what is wrong, not what was found.
    for key, secret in (("password", password), ("bearer_token", token)):
        if secret and any(c in secret for c in "\r\n\0"):
            sec.error(key, "must not contain line breaks or NUL characters")
    if username is not None or token is not None:
        if url.user is not None:
            sec.error("url", "carries a user name; give credentials in one place")
        if "authorization" in header_names:
            sec.error("headers", "Authorization is set by username/bearer_token; keep one")
    return username, password, token


def _compile(sec: Section, key: str, pattern: str | None) -> re.Pattern[bytes] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern.encode())
    except re.error as exc:
        sec.error(key, f"not a valid regular expression ({exc})")
        return None


# --- the probe ----------------------------------------------------------------------------


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


def _default_type(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json" if isinstance(doc, dict | list) else "text/plain; charset=utf-8"


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
