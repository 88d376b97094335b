"""Config shapes that parse but cannot be what the user meant; the loader's last guard.

Contract: each function takes what the loader has (the TOML text, the raw document, the
parsed checks) and returns or records problems in the loader's own format
(`<section>: <key>: <what is wrong>`), so they are reported together with the rest.

- `parse_toml`: syntax errors with their line (never quoting it: it may hold a
  secret). tomllib recurses once per nesting level; a file nested some
  hundreds of levels deep made it raise RecursionError (a traceback, exit 1).
  Such a file is now a syntax-level problem, and so is anything nested deeper
  than `MAX_DEPTH` (no onwatch key needs more than four).
- `nothing_watched`: an empty or comments-only file validated ("0 checks") and
  `onwatch run` would have watched nothing, silently. (An agent that only takes
  alerts in, through [intake], or pages declared incidents to its contacts, has
  something to do.)
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

MAX_DEPTH: Final = 16
_TOML_AT: Final = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


class _Check(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def contacts(self) -> tuple[str, ...]: ...

    @property
    def policy(self) -> str | None: ...


class TomlProblem(ValueError):
    """The text is no TOML onwatch can read; str() is the problem, ready to report."""


def parse_toml(text: str) -> dict[str, Any]:
    """tomllib.loads; a syntax error or deep nesting is a TomlProblem, never a crash."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlProblem(_syntax_problem(str(exc), text)) from None
    except RecursionError:
        raise TomlProblem(_too_deep()) from None
    if depth(doc) > MAX_DEPTH:
        raise TomlProblem(_too_deep())
    return doc


def _syntax_problem(message: str, text: str) -> str:
    """`config: line 3, column 9: TOML syntax error: ...`, also for "at end of document".

    The offending line itself is not quoted: it may hold a secret.
    """
    m = _TOML_AT.search(message)
    if m is None:
        return f"config: TOML syntax error: {message}"
    what = message[:m.start()]
    if m.group(1):
        return f"config: line {m.group(1)}, column {m.group(2)}: TOML syntax error: {what}"
    last = len(text.rstrip("\n").splitlines()) or 1
    return f"config: line {last} (end of file): TOML syntax error: {what}"


def _too_deep() -> str:
    return (f"config: tables and arrays are nested more than {MAX_DEPTH} levels deep; "
            "no onwatch setting needs that (see config.example.toml for the shape)")


def depth(doc: Any) -> int:
    """How deeply tables and arrays nest in `doc`, counted without recursion."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, Mapping):
            deepest = max(deepest, level)
            todo.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, level)
            todo.extend((v, level + 1) for v in value)
        if deepest > MAX_DEPTH:
            break
    return deepest


#: What names of checks, contacts, probes and locations look like (they appear in URLs,
#: metric labels and file names).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_name(text: str) -> bool:
    return NAME.fullmatch(text) is not None


def nothing_watched(raw: Mapping[str, Any], checks: Sequence[_Check], errors: list[str]
                    ) -> None:
    """An error when the config can do nothing: no checks, no [intake], no contacts.

    (Contacts alone are enough: incidents can be declared by hand and paged.)
    """
    if checks or any(k in raw for k in ("intake", "contacts")) or errors:
        return  # other problems first: a draft has many
    what = "the file is empty" if not raw else "it has no [[checks]], [intake] or [[contacts]]"
    errors.append(f"config: checks: nothing to watch ({what}); add at least one [[checks]] "
                  "table with a name and a type (see config.example.toml)")

