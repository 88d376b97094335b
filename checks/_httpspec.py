"""The http kind's configuration: `HttpSpec` and `parse`, which validates every key at
load (the keys are listed in checks/http.py's docstring).

Everything a request needs is derived here, once, never per run: the URL parsed into a
yarl.URL, the request headers with Content-Type and Authorization built, the keyword
bytes, regexes compiled, JSON conditions parsed (checks/_httpjson.py). Secrets
(password, bearer_token) are kept out of `repr` and never quoted back in an error.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

from yarl import URL

from agent.fields import Section, show
from checks import _input
from checks._httpjson import Condition, parse_condition

_METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS", "PATCH", "DELETE")
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
    regex: _input.Pattern | None = None
    json: tuple[Condition, ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    phase_timings: bool = False
    fingerprint: bool = False
    fingerprint_ignore: tuple[_input.Pattern, ...] = ()
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
    regex = _input.pattern(sec, "regex", sec.optional_string("regex"))
    conditions = tuple(c for i, raw in enumerate(sec.string_list("json"))
                       if (c := parse_condition(sec, f"json[{i}]", raw)) is not None)
    fingerprint = sec.boolean("fingerprint", False)
    ignore = tuple(p for i, raw in enumerate(sec.string_list("fingerprint_ignore"))
                   if (p := _input.pattern(sec, f"fingerprint_ignore[{i}]", raw)) is not None)
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


def _default_type(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json" if isinstance(doc, dict | list) else "text/plain; charset=utf-8"
