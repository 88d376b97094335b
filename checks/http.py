"""HTTP(S) probe: status, keyword, latency limit, TLS verification, redirects, capped body read.

Config keys (all validated at load by `parse`):
  url              http:// or https:// URL (required)
  method           GET, HEAD, POST, ... (default GET)
  headers          table of extra request headers
  expect_status    list of accepted codes; default: any 2xx
  keyword          text the body must contain (searched in the first `max_body` bytes)
  max_latency      duration; slower than this is a failure (error_kind assertion)
  verify_tls       verify the certificate chain and host name (default true)
  ca_file          PEM bundle to trust instead of the system store (private CAs)
  follow_redirects follow 3xx responses (default true, at most 10)
  max_body         how much of the body is read at most (default "1MiB"); the rest is
                   never downloaded, so a huge or endless response costs nothing
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.fields import Section
from checks.base import CheckResult, ProbeContext

_METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS", "PATCH", "DELETE")


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
    codes = sec.value("expect_status")
    status: frozenset[int] = frozenset()
    if codes is not None:
        if isinstance(codes, int) and not isinstance(codes, bool):
            codes = [codes]
        if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
        ):
            sec.error("expect_status", f"must be a list of HTTP status codes (100-599), got {codes!r}")
        else:
            status = frozenset(codes)
    keyword = sec.optional_string("keyword")
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
    raise NotImplementedError("http probe: being written")
