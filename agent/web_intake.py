"""The intake endpoints: alerts sent in by Alertmanager and by generic JSON webhooks.

    POST /api/v1/intake/alertmanager[/<token>]
    POST /api/v1/intake/webhook/<name>[/<token>]

On the private listener only. The token (`[intake] token`, default the API
token) comes in the URL path or as `Authorization: Bearer <token>`, because
Alertmanager's `webhook_configs` can send either; it is compared in constant
time and never logged. Answers:

- 200 `{"accepted": n, "outcomes": {...}, "incidents": [...]}`: applied;
- 400 `{"error": "<field>: <what is wrong>"}`: malformed, nothing applied
  (Alertmanager does not retry a 4xx; the reason is in its log);
- 401 wrong or missing token; 404 intake off or no such webhook;
- 413 body over `[intake] max_body_bytes` (read no further than that).

Every alert of a request ends in one engine call (`Engine.on_alert`): the
engine is the only writer of incidents. A store failure is a 500, which
Alertmanager retries; what was applied before it is then a duplicate.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import structlog
from aiohttp import web

from agent import intake, webguard
from agent.config_intake import IntakeConfig
from agent.engine import Engine

log = structlog.get_logger(__name__)

ENGINE_KEY = web.AppKey("intake_engine", Engine)
TOKEN_KEY = web.AppKey("intake_api_token", str)
PREFIX = "/api/v1/intake/"


def add_routes(app: web.Application, engine: Engine, api_token: str) -> None:
    app[ENGINE_KEY] = engine
    app[TOKEN_KEY] = api_token
    app.router.add_post(PREFIX + "alertmanager", alertmanager_post)
    app.router.add_post(PREFIX + "alertmanager/{token}", alertmanager_post)
    app.router.add_post(PREFIX + "webhook/{name}", webhook_post)
    app.router.add_post(PREFIX + "webhook/{name}/{token}", webhook_post)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refuse(request: web.Request, source: str, reason: str, status: int, message: str
            ) -> web.Response:
    request.app[ENGINE_KEY].metrics.incidents.rejected_request(source, reason)
    log.warning("intake_refused", source=source, reason=reason, status=status,
                detail=message[:200])
    return _error(status, message)


def _authorized(request: web.Request, cfg: IntakeConfig) -> bool:
    expected = (cfg.token or request.app[TOKEN_KEY]).encode()
    given = request.match_info.get("token")
    if given is None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = ""
    return webguard.same_secret(given.strip(), expected.decode())


async def _payload(request: web.Request, source: str, cfg: IntakeConfig
                   ) -> Any | web.Response:
    """The JSON body, read up to the limit; a refusal response instead when it is not."""
    limit = cfg.max_body_bytes
    too_big = (f"the body is larger than {limit} bytes ([intake] max_body_bytes); "
               "send fewer alerts per request (Alertmanager: max_alerts)")
    if (request.content_length or 0) > limit:
        return _refuse(request, source, "too_large", 413, too_big)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return _refuse(request, source, "too_large", 413, too_big)
        chunks.append(chunk)
    try:
        doc = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        return _refuse(request, source, "malformed", 400, f"the body is not JSON: {exc}")
    except RecursionError:
        return _refuse(request, source, "malformed", 400,
                       f"the body is nested more than {webguard.MAX_DEPTH} levels deep")
    problem = webguard.unstorable(doc)
    if problem:
        return _refuse(request, source, "malformed", 400, problem)
    return doc


async def _intake(request: web.Request, source: str) -> tuple[IntakeConfig, Any] | web.Response:
    """Checks common to both endpoints: intake on, token right, body within bounds and JSON."""
    cfg = request.app[ENGINE_KEY].config.intake
    if cfg is None:
        return _error(404, "the intake is off: add an [intake] table to the config (see the "
                           "README, \"With Prometheus and Alertmanager\")")
    if not _authorized(request, cfg):
        return _refuse(request, source, "unauthorized", 401,
                       "missing or wrong token (see [intake] token; in the URL path or as "
                       "Authorization: Bearer)")
    payload = await _payload(request, source, cfg)
    if isinstance(payload, web.Response):
        return payload
    return cfg, payload


def _apply(request: web.Request, source: str, events: list[intake.AlertEvent]
           ) -> web.Response:
    engine = request.app[ENGINE_KEY]
    outcomes: Counter[str] = Counter()
    for ev in events:
        outcome = engine.on_alert(ev)
        outcomes[outcome] += 1
        engine.metrics.incidents.received(source, outcome)
    ids = sorted({i.id for ev in events if (i := engine.store.latest_by_key(ev.key))})
    log.info("intake_applied", source=source, alerts=len(events), **outcomes)
    return web.json_response({"accepted": len(events), "outcomes": dict(outcomes),
                              "incidents": ids})


async def alertmanager_post(request: web.Request) -> web.Response:
    got = await _intake(request, "alertmanager")
    if isinstance(got, web.Response):
        return got
    cfg, payload = got
    try:
        events = intake.alertmanager(payload, cfg)
    except intake.IntakeError as exc:
        return _refuse(request, "alertmanager", "malformed", 400, str(exc))
    return _apply(request, "alertmanager", events)


async def webhook_post(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    cfg = request.app[ENGINE_KEY].config.intake
    hook = cfg.webhooks.get(name) if cfg is not None else None
    if cfg is not None and hook is None:
        # Not counted: the name is the caller's text, not a bounded label.
        return _error(404, f"no webhook named {name[:64]!r}: add it under [[intake.webhooks]]")
    got = await _intake(request, name)
    if isinstance(got, web.Response):
        return got
    cfg, payload = got
    assert hook is not None
    try:
        events = intake.webhook(payload, hook, cfg, request.app[ENGINE_KEY].clock())
    except intake.IntakeError as exc:
        return _refuse(request, name, "malformed", 400, str(exc))
    return _apply(request, name, events)
