"""The http probe's body: a bounded read, and the assertions on what was read (keyword,
keyword_absent, regex, JSON conditions) plus the content fingerprint. Plumbing for
checks/http.py, not a kind.

Reading is bounded by `max_body`, always; what is beyond it is never downloaded. With
only keyword / keyword_absent the body is streamed (one chunk in memory) and reading
stops as soon as the answer is known; regex, json and fingerprint need the bytes read
whole, so they are collected (at most `max_body`).

The JSON conditions themselves (their syntax, parsing and evaluation): checks/_httpjson.py.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import aiohttp

from checks._httpjson import failed_condition
from checks._httpspec import HttpSpec
from checks._x509 import fingerprint52


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
        why = failed_condition(cond, doc)
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


