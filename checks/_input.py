"""What users write that the probes act on: regular expressions and host names.

Regular expressions (http `regex`, `fingerprint_ignore`, tcp `expect_regex`) are
compiled with RE2 (google-re2), never Python's `re`: RE2 matches in time linear
in the input, so no pattern and no answer a target sends can hold the event loop
(with `re`, `(a+)+$` against 26 "a" and a "b" took 5.6 s per run, and every other
check, page and /healthz waited with it). RE2 has no backreferences (`\\1`) and no
look-around (`(?=`, `(?!`, `(?<=`, `(?<!`); a pattern using them is refused at load
with its key path and RE2's own words, never at run time. Patterns run over bytes
read as UTF-8; `\\w`, `\\d`, `\\b` and `[[:alpha:]]` are ASCII-only, as in Perl's
`/a`. Syntax: https://github.com/google/re2/wiki/Syntax

Host names (`host` of the stream kinds: tcp, tls, smtp, imap, pop3, icmp) are a
name or an address, nothing more: `http://127.0.0.1` or `host:25` there is a
mistake the probe would otherwise turn into a DNS failure on every run.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

import re2

from agent.fields import Section, show

#: Compiled pattern memory cap: RE2 refuses (at load) what would need more.
MAX_PATTERN_MEMORY: Final = 8 << 20
MAX_PATTERN_LENGTH: Final = 4096
_SCHEMES: Final = frozenset({"http", "https", "tcp", "udp", "smtp", "smtps", "imap", "imaps",
                             "pop3", "pop3s", "ssl", "tls", "mailto", "ftp"})


class Match(Protocol):
    def start(self) -> int: ...

    def end(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled RE2 pattern over bytes; equal to another with the same source."""

    pattern: bytes
    _compiled: Any = field(compare=False, repr=False)

    def search(self, text: bytes | bytearray, pos: int = 0) -> Match | None:
        return cast("Match | None", self._compiled.search(text, pos))

    def sub(self, repl: bytes, text: bytes) -> bytes:
        return cast(bytes, self._compiled.sub(repl, text))


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = MAX_PATTERN_MEMORY
    return options


def compile_bytes(pattern: str) -> Pattern:
    """Compile `pattern` for matching bytes; raises ValueError with RE2's reason."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"longer than {MAX_PATTERN_LENGTH} characters")
    try:
        raw = pattern.encode()
        return Pattern(raw, re2.compile(raw, _options()))
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        raise ValueError(text) from None


def pattern(sec: Section, key: str, text: str | None, *, where: str | None = None
            ) -> Pattern | None:
    """`text` compiled, or None with the problem recorded under `where` (default `key`)."""
    if text is None:
        return None
    try:
        return compile_bytes(text)
    except ValueError as exc:
        hint = ""
        if any(t in text for t in ("(?=", "(?!", "(?<=", "(?<!")) or _backreference(text):
            hint = "; look-around and backreferences are not supported (RE2 syntax)"
        where_ = where or key
        prefix = "" if where_ == key else f"{key}: "
        sec.error(where_, f"{prefix}not a regular expression RE2 accepts ({exc}){hint}")
        return None


def _backreference(text: str) -> bool:
    return any(text[i] == "\\" and text[i + 1].isdigit() and text[i + 1] != "0"
               for i in range(len(text) - 1))


def host(sec: Section, key: str = "host") -> str:
    """A host name or IP address (IPv6 without brackets); a URL or host:port is an error."""
    value = sec.string(key)
    if not value:
        return value
    problem = host_problem(value)
    if problem:
        sec.error(key, f"{problem}, got {show(value)}")
    return value


def host_problem(value: str) -> str | None:
    scheme, colon, _ = value.partition(":")
    if "://" in value or (colon and scheme.lower() in _SCHEMES):
        return "must be a host name or address, without a scheme (the port goes in `port`)"
    if value.startswith("["):
        return "an IPv6 address goes without brackets, the port in `port`"
    if any(c in value for c in "/?#@ \t\r\n\0"):
        return "must be a host name or address, without a path, user or spaces"
    if ":" in value:
        try:
            ipaddress.IPv6Address(value.split("%", 1)[0])
        except ValueError:
            return "must be a host name or address; the port goes in `port`"
    return None
