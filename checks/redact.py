"""Secrets the agent sends never come back through a target's answer.

A target may quote what it was sent: a malformed status line made of the request's
`Authorization` header, a banner that repeats the login, an error page with the
URL. Whatever a probe puts in a reason can end up in the store, pages, the API,
the CLI and the logs, so the reason is cleaned at one boundary for every kind:
`run_with_deadline` (checks/base.py) passes each result through `result(spec, r)`.

Contract:
- `secrets_of(spec)` finds every secret a spec makes the agent send, by walking
  the spec's dataclass fields (nested ones too, e.g. mailflow's smtp and imap
  endpoints): fields named like a secret (`password`, `bearer_token`, `token`,
  ...), the values of sensitive request headers (Authorization, Cookie, API
  keys), credentials in URLs, and the forms they travel in (basic auth's
  base64 of `user:password`, SMTP's AUTH PLAIN blob and AUTH LOGIN base64).
- Each secret is searched in its spellings a reason may quote it in: as is,
  base64 (both alphabets), percent-encoded, escaped as in Python's bytes repr,
  JSON and IMAP quoted strings; case-insensitively.
- A part of a secret cut by a reason's length limit is a secret too: any piece
  of at least `MIN_PIECE` characters at the start or end of a spelling is
  masked. Every match becomes `***`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, quote_plus, unquote, urlsplit

if TYPE_CHECKING:
    from checks.result import CheckResult

MASK: Final = "***"
MIN_PIECE: Final = 6
#: Pieces are looked for within this many leading (trailing) characters of a spelling;
#: the whole spelling is always matched.
MAX_PIECE: Final = 256
SECRET_FIELDS: Final = frozenset({"password", "bearer_token", "token", "secret", "api_key",
                                  "api_token", "passphrase"})
_SENSITIVE_HEADER: Final = re.compile(
    r"authorization|cookie|token|secret|key|auth|pass|session|signature", re.IGNORECASE)
_CACHE_SIZE: Final = 4096


def _walk(value: Any, depth: int = 0) -> Iterator[tuple[str, Any, Any]]:
    """(field name, field value, owner) of `value` and its nested dataclasses."""
    if depth > 4 or not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    for f in dataclasses.fields(value):
        item = getattr(value, f.name, None)
        yield f.name, item, value
        yield from _walk(item, depth + 1)
        if isinstance(item, tuple):
            for member in item:
                yield from _walk(member, depth + 1)


def secrets_of(spec: Any) -> tuple[str, ...]:
    """Every secret `spec` makes the agent send, in the forms it is sent in."""
    found: list[str] = []
    for name, value, owner in _walk(spec):
        if name.lstrip("_") in SECRET_FIELDS and isinstance(value, str) and value:
            found.append(value)
            found += _login_forms(getattr(owner, "username", None), value)
        elif name.lstrip("_") in ("headers", "send_headers") and isinstance(value, tuple):
            found += _header_secrets(value)
        elif name.lstrip("_") == "url":
            found += _url_secrets(str(value))
    return tuple(dict.fromkeys(s for s in found if s))


def _login_forms(username: object, password: str) -> list[str]:
    if not isinstance(username, str):
        return []
    return [_b64(f"{username}:{password}"), _b64(f"\0{username}\0{password}"), _b64(password)]


def _header_secrets(headers: tuple[Any, ...]) -> list[str]:
    out: list[str] = []
    for pair in headers:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str)
                                                                   for x in pair)):
            continue
        name, value = pair
        if _SENSITIVE_HEADER.search(name):
            scheme, _, rest = value.strip().partition(" ")
            # "Bearer X" / "Basic X": X is the secret; the scheme word is not.
            out.append(rest.strip() if rest and scheme.isalpha() else value.strip())
            if scheme.lower() == "basic" and rest:
                with contextlib.suppress(ValueError):
                    out.append(base64.b64decode(rest.strip(), validate=True).decode())
    return out


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if parts.password is None:
        return []
    password = unquote(parts.password)
    return [parts.password, password, *_login_forms(unquote(parts.username or ""), password)]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def spellings(secret: str) -> list[str]:
    """How `secret` may appear in what a target sent back or a library said about it."""
    raw = secret.encode()
    forms = [secret, _b64(secret), base64.urlsafe_b64encode(raw).decode(),
             quote(secret, safe=""), quote_plus(secret), repr(raw)[2:-1],
             json.dumps(secret)[1:-1], secret.replace("\\", "\\\\").replace('"', '\\"'),
             "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in secret)]
    forms += [f.rstrip("=") for f in forms[1:3]]
    return list(dict.fromkeys(f for f in forms if f))


def _piece_pattern(form: str, *, from_end: bool) -> str:
    """A pattern for `form` or any piece of it of at least MIN_PIECE characters that
    starts at its beginning (or, `from_end`, ends at its end: matched on reversed text)."""
    whole = re.escape(form[::-1] if from_end else form)
    text = (form[::-1] if from_end else form)[:MAX_PIECE]
    head = min(len(text), MIN_PIECE)
    tail = "".join(f"(?:{re.escape(c)}" for c in text[head:]) + ")?" * (len(text) - head)
    return f"{whole}|{re.escape(text[:head])}{tail}"


class Redactor:
    """Masks the given secrets in text; built once per spec (see `for_spec`)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = sorted({f for s in secrets for f in spellings(s)}, key=len, reverse=True)
        self.empty = not forms
        flags = re.IGNORECASE
        self._ahead = re.compile("|".join(_piece_pattern(f, from_end=False) for f in forms),
                                 flags) if forms else None
        self._behind = re.compile("|".join(_piece_pattern(f, from_end=True) for f in forms),
                                  flags) if forms else None

    def text(self, text: str) -> str:
        if self._ahead is None or self._behind is None or not text:
            return text
        text = self._ahead.sub(MASK, text)
        # Pieces cut at their start: search the reversed text for reversed endings.
        return self._behind.sub(MASK[::-1], text[::-1])[::-1]


_cache: dict[int, tuple[Any, Redactor]] = {}


def for_spec(spec: Any) -> Redactor:
    """The spec's redactor; specs are immutable and long-lived, so it is built once."""
    hit = _cache.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_cache) >= _CACHE_SIZE:  # configs reloaded many times: start over
        _cache.clear()
    redactor = Redactor(secrets_of(spec))
    _cache[id(spec)] = (spec, redactor)
    return redactor


def result(spec: Any, res: CheckResult) -> CheckResult:
    """`res` with every secret of `spec` masked in its reason."""
    redactor = for_spec(spec)
    if redactor.empty:
        return res
    clean = redactor.text(res.reason)
    return res if clean == res.reason else replace(res, reason=clean)
