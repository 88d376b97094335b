"""JSON conditions of the http kind: parsed once at load, evaluated on every answer.
Plumbing for checks/_httpspec.py (parsing) and checks/_httpbody.py (evaluation).

A small, safe JSONPath subset: `$`, then `.name`, `["any name"]` or `[index]` steps,
one operator (== != < <= > >=) and one JSON literal ("text", a number, true, false,
null). No filters, wildcards or scripts: a condition is data, parsed and checked once
at load (`parse_condition`), evaluated in microseconds (`failed_condition`). Equality
is JSON's: 1 == 1.0, but true is not 1 and "1" is not 1; order compares numbers with
numbers and strings with strings, anything else fails the condition and says why.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from agent.fields import Section, show

JsonValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Condition:
    """One JSON condition, parsed: `path op value`; `text` is how the user wrote it."""

    text: str
    path: tuple[str | int, ...]
    op: str
    value: JsonValue


_STEP = re.compile(r'\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_OP = re.compile(r"\s*(==|!=|<=|>=|<|>)\s*")
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def parse_condition(sec: Section, key: str, text: str) -> Condition | None:
    """`text` parsed, or None and an error naming `key` and what is wrong where."""
    def bad(why: str) -> None:
        sec.error(key, f"{show(text)}: {why}")

    if not text.startswith("$"):
        bad('must start with $ (the document), like $.status == "ok"')
        return None
    path: list[str | int] = []
    pos = 1
    while (m := _STEP.match(text, pos)) is not None:  # bounded: every step consumes text
        name, index, quoted = m.groups()
        try:
            path.append(name if name else int(index) if index else json.loads(quoted))
        except ValueError:
            bad(f"{m.group()} is not a valid JSON string in brackets")
            return None
        pos = m.end()
    op = _OP.match(text, pos)
    if op is None:
        rest = text[pos:].strip()
        hint = ' (names with other characters go in ["..."])' if rest[:1] in (".", "[") else ""
        bad(f"expected an operator (==, !=, <, <=, >, >=) after {_path(path)}, got "
            f"{show(rest) if rest else 'nothing'}{hint}")
        return None
    literal = text[op.end():].strip()
    try:
        value = json.loads(literal)
    except ValueError:
        bad(f"expected a JSON value after {op.group(1)} (a \"string\", a number, true, false "
            f"or null), got {show(literal) if literal else 'nothing'}")
        return None
    if isinstance(value, list | dict):
        bad("compares with one value, not an array or object")
        return None
    if op.group(1) in _ORDER and not (_is_number(value) or isinstance(value, str)):
        bad(f"{op.group(1)} compares numbers or strings, not {show(value)}")
        return None
    return Condition(text, tuple(path), op.group(1), value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _path(path: tuple[str | int, ...] | list[str | int]) -> str:
    out = "$"
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _NAME.fullmatch(step):
            out += f".{step}"
        else:
            out += f"[{json.dumps(step, ensure_ascii=False)}]"
    return out


def failed_condition(cond: Condition, doc: Any) -> str | None:
    """Why `cond` does not hold for `doc`, or None when it holds."""
    value = doc
    for i, step in enumerate(cond.path):
        where = _path(cond.path[:i])
        if isinstance(step, int):
            if not isinstance(value, list):
                return f"{where} is {_brief(value)}, not an array"
            if step >= len(value):
                return f"{where} has {len(value)} items"
        elif not isinstance(value, dict):
            return f"{where} is {_brief(value)}, not an object"
        elif step not in value:
            return f"{where} has no field {json.dumps(step, ensure_ascii=False)}"
        value = value[step]
    want = cond.value
    if cond.op in ("==", "!="):
        same = value == want if _is_number(value) and _is_number(want) else (
            type(value) is type(want) and value == want)
        holds = same if cond.op == "==" else not same
    elif (_is_number(want) and _is_number(value)) or (
            isinstance(want, str) and isinstance(value, str)):
        holds = _ORDER[cond.op](value, want)
    else:
        kind = "a number" if _is_number(want) else "a string"
        return f"{_path(cond.path)} is {_brief(value)}, not {kind}"
    return None if holds else f"{_path(cond.path)} is {_brief(value)}"


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + '..."'
