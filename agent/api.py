"""People acting on incidents: the one-click acknowledgement pages and the JSON API.

Acknowledgement links (`/ack/<token>`): a GET only shows a confirmation page
and changes nothing, because mail and chat apps fetch links to preview them;
the POST from that page acknowledges as the recipient the token was made for.
A forged, tampered or expired token gets a 4xx page and changes nothing.

API (`/api/v1/...`): every request needs `Authorization: Bearer <token>`
(`[agent] api_token`, or the `api.token` file the agent creates in its state
directory), compared in constant time, or a person's own token (`onwatch token
create --for NAME`, stored hashed: agent/store/auth.py) while NAME is a contact in the
config. With a personal token the person is the actor of whatever the call does
(via "api"), whatever the body's `by` says; with the shared token the body's
`by` is taken as today.
"""

from __future__ import annotations

import contextlib
import html
import re
from typing import Any

from aiohttp import web

from agent import links, tenancy, webguard
from agent.engine import ActionError, Engine
from agent.fields import parse_duration
from agent.incidents import Incident
from agent.store.auth import AuthStore
from agent.store.records import Action
from agent.vocab import SEVERITIES, Severity, Via

ENGINE_KEY = web.AppKey("engine", Engine)
TOKEN_KEY = web.AppKey("api_token", str)
AUTH_KEY = web.AppKey("auth_store", AuthStore)
#: Where the middleware leaves the person a personal token belongs to.
PERSON = "api_person"


def add_routes(app: web.Application, engine: Engine, api_token: str) -> None:
    app[ENGINE_KEY] = engine
    app[TOKEN_KEY] = api_token
    app[AUTH_KEY] = AuthStore(engine.store)
    app.router.add_get("/ack/{token}", ack_page)
    app.router.add_post("/ack/{token}", ack_post)
    app.router.add_get("/api/v1/incidents", api_list)
    app.router.add_post("/api/v1/incidents", api_declare)
    app.router.add_get(r"/api/v1/incidents/{id:\d+}", api_show)
    app.router.add_post(r"/api/v1/incidents/{id:\d+}/{action:ack|resolve|notes}", api_act)
    app.router.add_post(r"/api/v1/incidents/{id:\d+}/actions", api_action_add)
    app.router.add_get("/api/v1/actions", api_action_list)
    app.router.add_post(r"/api/v1/actions/{id:\d+}/done", api_action_done)
    app.router.add_get("/api/v1/maintenance", api_maintenance_list)
    app.router.add_post("/api/v1/maintenance", api_maintenance_start)
    app.router.add_delete(r"/api/v1/maintenance/{id:\d+}", api_maintenance_end)
    app.middlewares.append(_require_token)


# -- acknowledgement links ---------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (f"<!doctype html><html><head><meta charset=utf-8><meta name=viewport "
            f"content='width=device-width'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:36em;margin:2em auto'>"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>")
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _claims(request: web.Request) -> links.Claims | web.Response:
    engine = request.app[ENGINE_KEY]
    try:
        claims = links.verify(engine.link_key, request.match_info["token"], engine.clock())
        if claims.action != "ack":  # a reply channel's resolve or e-mail token
            raise links.LinkError("this is not an acknowledgement link")
        return claims
    except links.LinkError as exc:
        status = 410 if "expired" in str(exc) else 403
        return _page("Link refused", f"<p>{html.escape(str(exc))}.</p>", status)


def _describe(inc: Incident) -> str:
    return (f"<p><b>Incident #{inc.id}</b>: {html.escape(inc.title)}<br>"
            f"{html.escape(inc.reason)}<br>Severity: {inc.severity}. "
            f"State: {inc.state.value}.</p>")


def _linked(request: web.Request) -> tuple[links.Claims, Incident] | web.Response:
    """The link's claims and its incident, or the page that refuses it."""
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    inc = request.app[ENGINE_KEY].store.incident(claims.incident_id)
    if inc is None:
        return _page("Unknown incident", "<p>This incident does not exist here.</p>", 404)
    if links.episode_of(inc.opened_at) != claims.episode:
        # The incident was reopened after this link was sent: acknowledging the new
        # episode takes a link from the new page (whoever holds the old one was not
        # told about it).
        return _page("Link out of date", f"<p>Incident #{inc.id} was reopened after this "
                     "link was sent. Use the link in the latest message.</p>", 410)
    return claims, inc


async def ack_page(request: web.Request) -> web.Response:
    linked = _linked(request)
    if isinstance(linked, web.Response):
        return linked
    claims, inc = linked
    if not inc.is_open or inc.acknowledged_by:
        return _page("Nothing to do", _describe(inc) + _done(inc))
    form = (f"<form method=post><button style='font-size:1.5em;padding:.5em 1em'>"
            f"Acknowledge as {html.escape(claims.recipient)}</button></form>"
            "<p>Acknowledging stops the escalation to the next person.</p>")
    return _page(f"Acknowledge incident #{inc.id}?", _describe(inc) + form)


async def ack_post(request: web.Request) -> web.Response:
    linked = _linked(request)
    if isinstance(linked, web.Response):
        return linked
    claims = linked[0]
    engine = request.app[ENGINE_KEY]
    try:
        inc = engine.acknowledge(claims.incident_id, by=claims.recipient, via=Via.LINK)
    except ActionError as exc:
        current = engine.store.incident(claims.incident_id)
        if current is None:
            return _page("Unknown incident", f"<p>{html.escape(str(exc))}.</p>", exc.status)
        return _page("Already handled", _describe(current) + _done(current), 409)
    return _page("Acknowledged", _describe(inc) + "<p>Thank you. Escalation has stopped; "
                 "resolve the incident when it is fixed.</p>")


def _done(inc: Incident) -> str:
    if not inc.is_open:
        return f"<p>Already resolved by {html.escape(inc.resolved_by or '?')}.</p>"
    return f"<p>Already acknowledged by {html.escape(inc.acknowledged_by or '?')}.</p>"


# -- JSON API --------------------------------------------------------------------------


@web.middleware
async def _require_token(request: web.Request, handler: Any) -> web.StreamResponse:
    # The intake checks its own token (it may come in the path, and may differ).
    if request.path.startswith("/api/") and not request.path.startswith("/api/v1/intake/"):
        expected, header = request.app[TOKEN_KEY], request.headers.get("Authorization")
        if not webguard.bearer_matches(header, expected) and not _personal(request, header):
            return web.json_response(
                {"error": "missing or wrong bearer token (see [agent] api_token)"}, status=401,
                headers={"WWW-Authenticate": "Bearer"})
        # A client's person reaches that client's incidents only: any other is not there.
        scope = _scope(request)
        found = re.match(r"/api/v1/incidents/(\d+)(?:/|$)", request.path)
        engine = request.app[ENGINE_KEY]
        if scope is not None and found is not None:
            inc = engine.store.incident(int(found[1])) if len(found[1]) <= 18 else None
            if inc is None or not tenancy.sees(engine.config, scope, inc):
                return web.json_response({"error": "no such incident"}, status=404)
    resp: web.StreamResponse = await handler(request)
    return resp


def _scope(request: web.Request) -> str | None:
    """The tenant a personal token's person belongs to; None: the provider's (sees all)."""
    person = request.get(PERSON)
    if not isinstance(person, str):
        return None  # the shared token is the provider's
    return tenancy.of_person(request.app[ENGINE_KEY].config, person)


def _personal(request: web.Request, header: str | None) -> bool:
    """A person's own token: the request acts as them (recorded), else False."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.startswith("onw_") or len(token) > 200:
        return False
    found = request.app[AUTH_KEY].token_person(token)
    engine = request.app[ENGINE_KEY]
    # Once its person is gone from the config (a client's former employee, say), a token
    # opens nothing, revoked or not: it must not keep whatever view its name implies.
    if found is None or found[1] not in engine.config.contacts:
        return False
    request[PERSON] = found[1]
    with contextlib.suppress(*engine.store.errors), engine.store.tx():  # "last used" may wait
        request.app[AUTH_KEY].touch_token(found[0], engine.clock())
    return True


def actor(request: web.Request, body: dict[str, Any]) -> tuple[str, Via]:
    """Who acts, and how: a personal token's person via the API; else the body's `by`."""
    person = request.get(PERSON)
    if isinstance(person, str):
        return person, Via.API
    return _text(body, "by", "api") or "api", _via(body)


def incident_json(inc: Incident) -> dict[str, Any]:
    return {"id": inc.id, "check": inc.check, "title": inc.title, "severity": inc.severity,
            "state": inc.state.value, "reason": inc.reason, "opened_at": inc.opened_at,
            "started_at": inc.started_at, "acknowledged_at": inc.acknowledged_at,
            "acknowledged_by": inc.acknowledged_by, "resolved_at": inc.resolved_at,
            "resolved_by": inc.resolved_by, "policy": inc.policy, "kind": inc.kind,
            "labels": dict(inc.labels)}


async def api_list(request: web.Request) -> web.Response:
    store = request.app[ENGINE_KEY].store
    open_only = request.query.get("open", "") in ("1", "true", "yes")
    scope = _scope(request)
    found = store.incidents(open_only=open_only, limit=200 if scope is None else 2000)
    mine = tenancy.visible(request.app[ENGINE_KEY].config, scope, found)[:200]
    return web.json_response({"incidents": [incident_json(i) for i in mine]})


async def api_show(request: web.Request) -> web.Response:
    store = request.app[ENGINE_KEY].store
    inc = store.incident(webguard.row_id(request))
    if inc is None:
        return web.json_response({"error": "no such incident"}, status=404)
    timeline = [{"at": e.at, "kind": e.kind, "actor": e.actor, "message": e.message,
                 "data": dict(e.data)} for e in store.timeline(inc.id)]
    return web.json_response({**incident_json(inc), "timeline": timeline})


_body = webguard.json_body
#: A maintenance window longer than this is a typo (or an attack on the arithmetic).
MAX_WINDOW_S = 366 * 86400.0


def _text(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or len(value) > 2000:
        raise webguard.bad_request(f"{key} must be a string of at most 2000 characters")
    return value.strip()


async def api_act(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    incident_id, action = webguard.row_id(request), request.match_info["action"]
    body = await _body(request)
    by, via = actor(request, body)
    try:
        if action == "ack":
            inc = engine.acknowledge(incident_id, by=by, via=via)
        elif action == "resolve":
            inc = engine.resolve(incident_id, by=by, cause=_text(body, "cause"),
                                 fix=_text(body, "fix"), via=via)
        else:
            text = _text(body, "text")
            if not text:
                return web.json_response({"error": "text is required"}, status=400)
            engine.note(incident_id, by=by, text=text, via=via)
            found = engine.store.incident(incident_id)
            assert found is not None
            inc = found
    except ActionError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response(incident_json(inc))


def _via(body: dict[str, Any]) -> Via:
    """How an API call was made: the API, or the CLI (which is an API client).

    A caller cannot claim another way (a link, a reply): those are recorded by
    the handlers that verify them.
    """
    return Via.CLI if _text(body, "via", "api") == Via.CLI else Via.API


async def api_declare(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    body = await _body(request)
    title = _text(body, "title")
    severity = _text(body, "severity", "high")
    if not title:
        return web.json_response({"error": "title is required"}, status=400)
    if severity not in SEVERITIES:
        return web.json_response(
            {"error": f"severity must be one of {', '.join(SEVERITIES)}"}, status=400)
    scope, policy = _scope(request), _text(body, "policy") or None
    if scope is not None and policy and tenancy.of_name(engine.config, policy) != scope:
        return web.json_response({"error": f"no policy {policy!r} of yours"}, status=403)
    try:
        inc = engine.declare(title=title, severity=Severity(severity), policy=policy,
                             by=actor(request, body)[0], reason=_text(body, "reason"),
                             tenant=scope or "")
    except ActionError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response(incident_json(inc), status=201)


async def api_maintenance_list(request: web.Request) -> web.Response:
    engine, scope = request.app[ENGINE_KEY], _scope(request)
    return web.json_response({"windows": [w for w in engine.store.maintenance(engine.clock())
                                          if _window_mine(engine, scope, w)]})


def _window_mine(engine: Engine, scope: str | None, window: dict[str, Any]) -> bool:
    """A tenant's window names its checks only (tags may span clients: the provider's)."""
    checks = window.get("checks") or []
    return scope is None or (not window.get("tags") and bool(checks) and all(
        tenancy.of_name(engine.config, c) == scope for c in checks))


async def api_maintenance_start(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    body = await _body(request)
    checks, tags = body.get("checks", []), body.get("tags", [])
    if not (isinstance(checks, list) and isinstance(tags, list)
            and all(isinstance(x, str) for x in [*checks, *tags])):
        return web.json_response({"error": "checks and tags must be lists of names"}, status=400)
    scope = _scope(request)
    if not _window_mine(engine, scope, {"checks": checks, "tags": tags}):
        return web.json_response({"error": "name your own checks (tags are the provider's)"},
                                 status=403)
    known = {c.name for c in engine.config.checks}
    known_tags = {t for c in engine.config.checks for t in c.tags}
    unknown = [c for c in checks if c not in known] + [t for t in tags if t not in known_tags]
    if unknown or not (checks or tags):
        what = f"unknown check or tag {unknown[0]!r}" if unknown else "name checks or tags"
        return web.json_response({"error": what}, status=400)
    duration = parse_duration(_text(body, "for", "1h"))
    if duration is None or not 0 < duration <= MAX_WINDOW_S:
        return web.json_response({"error": 'for must be a duration like "2h", at most 366d'},
                                 status=400)
    wid = engine.start_maintenance(checks=checks, tags=tags, duration=duration,
                                   reason=_text(body, "reason"), by=actor(request, body)[0])
    return web.json_response({"id": wid, "until": engine.clock() + duration}, status=201)


async def api_maintenance_end(request: web.Request) -> web.Response:
    engine, wid = request.app[ENGINE_KEY], webguard.row_id(request)
    window = next((w for w in engine.store.maintenance(engine.clock()) if w["id"] == wid), None)
    if window is not None and not _window_mine(engine, _scope(request), window):
        return web.json_response({"error": f"no current maintenance window #{wid}"}, status=404)
    try:
        engine.end_maintenance(wid, by=actor(request, {})[0])
    except ActionError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response({"ended": True})


# -- prevention actions ----------------------------------------------------------------


def action_json(a: Action) -> dict[str, Any]:
    return {"id": a.id, "incident_id": a.incident_id, "text": a.text, "owner": a.owner,
            "created_at": a.created_at, "created_by": a.created_by, "done_at": a.done_at,
            "done_by": a.done_by, "open": a.is_open}


async def api_action_add(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    body = await _body(request)
    text, owner = _text(body, "text"), _text(body, "owner")
    if not text or not owner:
        return web.json_response({"error": "text and owner are required"}, status=400)
    try:
        by, via = actor(request, body)
        aid = engine.add_action(int(request.match_info["id"]), text=text, owner=owner, by=by,
                                via=via)
    except ActionError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response({"id": aid}, status=201)


async def api_action_done(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    body = await _body(request)
    aid = int(request.match_info["id"])
    if _scope(request) is not None and aid not in {a.id for a in _actions(request, False)}:
        return web.json_response({"error": f"no prevention action #{aid}"}, status=404)
    try:
        by, via = actor(request, body)
        engine.finish_action(aid, by=by, via=via)
    except ActionError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response({"id": aid, "done": True})


async def api_action_list(request: web.Request) -> web.Response:
    open_only = request.query.get("open", "") in ("1", "true", "yes")
    return web.json_response({"actions": [action_json(a) for a in
                                          _actions(request, open_only)]})


def _actions(request: web.Request, open_only: bool) -> list[Action]:
    engine, scope = request.app[ENGINE_KEY], _scope(request)
    found = engine.store.actions(open_only=open_only)
    if scope is None:
        return found
    return [a for a in found if (inc := engine.store.incident(a.incident_id)) is not None
            and tenancy.sees(engine.config, scope, inc)]
