"""What stands between hostile HTTP and the agent's handlers: input that cannot hurt.

Contract: no request, however malformed, makes a handler raise past `errors`;
an API client always gets a JSON body `{"error": "..."}` that names what was
wrong with its request and nothing of the agent's insides (no exception names,
no paths, no versions). Concretely:

- `errors` (middleware): aiohttp's own 4xx answers on /api/ (no such route,
  wrong method) become JSON; an unexpected exception is logged with its stack
  trace and its route's pattern (never the path: paths carry secrets) and
  answered with a plain JSON 500 that says where to look.
- `bearer_matches`: a header that is not UTF-8 (or not text) is a wrong token,
  not a crash.
- `row_id`: a path id beyond SQLite's 64-bit integers is "no such thing" (404).
- `json_body`: the body must be UTF-8 JSON, at most `MAX_DEPTH` levels deep,
  every string storable (no lone surrogates, no NUL); else 400.
- `FORM_ERRORS`: what `request.post()` raises on a form it cannot read (bytes not
  in the charset claimed, a charset Python does not know, a broken multipart
  body); a handler answers 400 for them.
- `hide_server`: the `Server` header says "onwatch", never Python's or
  aiohttp's version (an attacker's shopping list).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Final

import structlog
from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError

log = structlog.get_logger(__name__)

SERVER: Final = "onwatch"
MAX_DEPTH: Final = 32
#: SQLite integers are signed 64-bit: a larger id cannot name a row.
MAX_ROW_ID: Final = 2**63 - 1
FORM_ERRORS: Final = (ValueError, LookupError, HttpProcessingError)


def _json_error(status: int, message: str, headers: dict[str, str] | None = None
                ) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def bad_request(message: str) -> web.HTTPBadRequest:
    """A 400 with a JSON body, to raise from a handler."""
    return web.HTTPBadRequest(text=json.dumps({"error": message}),
                              content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return _json_error(exc.status, exc.reason.lower(), keep)
    except Exception:
        # A bug, not bad input: the log gets the whole story, the client a pointer to it.
        # The route's pattern, not the path: paths carry secrets (/ack/<token>,
        # /console/link/<secret>, an intake token) that must never reach a log.
        resource = request.match_info.route.resource
        log.exception("request_failed", method=request.method,
                      route=resource.canonical if resource is not None else "?")
        return _json_error(500, "the agent failed to answer this request; its log says why")


async def hide_server(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER


def install(app: web.Application) -> None:
    """Put the guard in front of every route of `app` (call before adding middlewares)."""
    app.middlewares.insert(0, errors)
    app.on_response_prepare.append(hide_server)
    # Answers aiohttp writes itself, before any app is involved (a malformed request
    # line gets a 400 from the protocol handler), take the default from this name.
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that treats undecodable input as simply wrong."""
    try:
        raw = given.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(raw, expected.encode())


def bearer_matches(header: str | None, expected: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and same_secret(token, expected)


def row_id(request: web.Request, key: str = "id") -> int:
    """The path's numeric id; 404 (JSON) when no row can have it."""
    value = int(request.match_info[key])
    if value > MAX_ROW_ID:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no such {key} {value}"[:60]}),
                               content_type="application/json")
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, checked so that no handler meets what it cannot store."""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad_request("the body must be JSON (UTF-8, at most "
                          f"{MAX_DEPTH} levels deep)") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    problem = unstorable(body)
    if problem:
        raise bad_request(problem)
    return body


def unstorable(doc: Any) -> str | None:
    """Why `doc` cannot be kept as it is, or None. Iterative: depth is what it measures."""
    todo: list[tuple[Any, int]] = [(doc, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            return f"the body is nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, dict):
            todo.extend((k, depth) for k in value)
            todo.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            todo.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            if "\0" in value:
                return "strings in the body must not contain NUL characters"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "strings in the body must be valid Unicode (no lone surrogates)"
    return None
