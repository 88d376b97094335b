"""The http probe's body: a bounded read, and the assertions on what was read (keyword,
keyword_absent, regex, JSON conditions) plus the content fingerprint. Plumbing for
checks/http.py, not a kind.

Reading is bounded by `max_body`, always; what is beyond it is never downloaded. With
only keyword / keyword_absent the body is streamed (one chunk in memory) and reading
stops as soon as the answer is known; regex, json and fingerprint need the bytes read
whole, so they are collected (at most `max_body`).

JSON conditions are a small, safe JSONPath subset: `$`, then `.name`, `["any name"]` or
`[index]` steps, one operator (== != < <= > >=) and one JSON literal ("text", a number,
true, false, null). No filters, wildcards or scripts: a condition is data, parsed and
checked once at load (`parse_condition`), evaluated in microseconds. Equality is JSON's:
1 == 1.0, but true is not 1 and "1" is not 1; order compares numbers with numbers and
strings with strings, anything else fails the condition and says why.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import aiohttp

from agent.fields import Section, show
from checks._x509 import fingerprint52

if TYPE_CHECKING:
    from checks.http import HttpSpec

JsonValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Condition:
    """One JSON condition, parsed: `path op value`; `text` is how the user wrote it."""

    text: str
    path: tuple[str | int, ...]
    op: str
    value: JsonValue


class Body(NamedTuple):
    size: int
    complete: bool  # the whole body was read
    data: bytes | None  # when the spec needs it whole
    found: bool  # keyword seen
    unwanted: bool  # keyword_absent seen


async def read(spec: HttpSpec, resp: aiohttp.ClientResponse) -> Body:
    if spec.method == "HEAD":
        return Body(0, True, None, False, False)
    return await (_read_whole(spec, resp) if spec._collect else _stream(spec, resp))


async def _stream(spec: HttpSpec, resp: aiohttp.ClientResponse) -> Body:
    """Read at most `max_body` bytes, looking for keyword / keyword_absent on the way.

    Stops as soon as the answer is known (the keyword seen and nothing unwanted to look
    for, or the unwanted text seen). Only a tail of the longest text minus one byte is
    kept between chunks, for a text split across two, so memory stays at one chunk.
    The loop is bounded: every turn reads at least one byte or ends at EOF.
    """
    needle, unwanted = spec._needle, spec._unwanted
    keep = max(len(needle), len(unwanted)) - 1
    tail, size, found = b"", 0, False
    while size < spec.max_body:
        chunk = await resp.content.read(spec.max_body - size)
        if not chunk:
            return Body(size, True, None, found, False)
        size += len(chunk)
        window = tail + chunk if keep > 0 else chunk
        if needle and not found and needle in window:
            found = True
            if not unwanted:
                return Body(size, False, None, True, False)
        if unwanted and unwanted in window:
            return Body(size, False, None, found, True)
        tail = window[-keep:] if keep > 0 else b""
    return Body(size, resp.content.at_eof(), None, found, False)


async def _read_whole(spec: HttpSpec, resp: aiohttp.ClientResponse) -> Body:
    """Read at most `max_body` bytes into memory, for regex, json and fingerprint."""
    chunks: list[bytes] = []
    size = 0
    complete = False
    while size < spec.max_body:  # bounded: every turn reads >= 1 byte or ends at EOF
        chunk = await resp.content.read(spec.max_body - size)
        if not chunk:
            complete = True
            break
        chunks.append(chunk)
        size += len(chunk)
    else:
        complete = resp.content.at_eof()
    data = b"".join(chunks)
    return Body(size, complete, data, spec._needle in data,
                bool(spec._unwanted) and spec._unwanted in data)


def fingerprint(spec: HttpSpec, data: bytes) -> float:
    """content_fingerprint: of the bytes read, every `fingerprint_ignore` match removed."""
    for pattern in spec.fingerprint_ignore:
        data = pattern.sub(b"", data)
    return fingerprint52(data)


def failed(spec: HttpSpec, body: Body) -> str | None:
    """The first body assertion that fails, as a reason; None when all hold."""
    where = f"the whole body ({size(body.size)})" if body.complete else \
        f"the first {size(body.size)}"
    if spec.keyword is not None and not body.found:
        return f"keyword {_quote(spec.keyword)} not found in {where}"
    if spec.keyword_absent is not None and body.unwanted:
        return f"body contains {_quote(spec.keyword_absent)}, which must not appear"
    data = body.data
    if data is None:
        return None
    if spec.regex is not None and spec.regex.search(data) is None:
        pattern = spec.regex.pattern.decode(errors="replace")
        return f"regex {_quote(pattern)} does not match {where}"
    if not spec.json:
        return None
    if not body.complete:
        return f"JSON body larger than max_body ({size(spec.max_body)}): not evaluated"
    try:
        doc = json.loads(data)
    except RecursionError:
        return "JSON body nested too deeply to evaluate"
    except ValueError as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        return f"body is not JSON ({detail}), for the json conditions"
    for cond in spec.json:
        why = _failed_condition(cond, doc)
        if why is not None:
            return f"JSON condition {cond.text} failed: {why}"
    return None


def size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# --- JSON conditions ----------------------------------------------------------------------

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


def _failed_condition(cond: Condition, doc: Any) -> str | None:
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
