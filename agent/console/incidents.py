"""The console's incident pages and what a signed-in person does to an incident.

- GET /console: open incidents first (severity, what, since when, tier
  reached, who was paged, acknowledged by whom, each with its buttons), then
  the last resolved ones.
- GET /console/incidents/<id>: the whole timeline, every message sent with its
  delivery result per channel (the outbox rows), the prevention actions, the
  forms, and the link to the report.
- POST /console/incidents/<id>/<action>: ack, resolve (cause, fix), note,
  public (a status-page update), escalate, snooze (minutes), action (a
  prevention action: text, owner); POST /console/actions/<id>/done.

Every change is an engine call (the engine is the only writer of incidents)
made as the session's person with via "console"; a refused one (already
acknowledged, resolved, bad input) shows why and changes nothing. After a
change the browser is sent back to the incident's page (303).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from agent import webguard
from agent.console import context
from agent.console.context import CONSOLE_KEY, Console, page, redirect, refuse
from agent.console.guard import person
from agent.errors import ActionError
from agent.escalation import EscalationState
from agent.incidents import Incident, TimelineEntry
from agent.status.notices import NoticeError
from agent.vocab import Entry, Via

MAX_TEXT = 2000
SNOOZES = (15, 30, 60, 120, 240, 480)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", overview)
    app.router.add_get(r"/console/incidents/{id:\d{1,12}}", incident_page)
    app.router.add_post(r"/console/incidents/{id:\d{1,12}}/{action}", act)
    app.router.add_post(r"/console/actions/{id:\d{1,12}}/done", action_done)


def _state(console: Console, inc: Incident) -> EscalationState | None:
    raw = console.engine.store.escalation(inc.id)
    return EscalationState.from_json(raw) if raw else None


def summary(console: Console, inc: Incident, timeline: Sequence[TimelineEntry] = ()
            ) -> dict[str, Any]:
    """One incident as the lists show it (with its cause and fix when `timeline` is given)."""
    st = _state(console, inc)
    done = next((e.data for e in reversed(timeline) if e.kind is Entry.RESOLVED), {})
    steps = console.engine.policy(inc).steps if inc.is_open else ()
    tier = (st.step + 1) if st is not None and st.step >= 0 else 0
    snoozed = (st.deferred_until if st is not None and st.deferred_until
               and st.deferred_until > console.engine.clock() else None)
    return {"inc": inc, "tier": tier, "tiers": len(steps), "paged": st.paged if st else (),
            "what": inc.check or "declared by hand", "snoozed_until": snoozed,
            "ended": bool(st and st.ended), "cause": str(done.get("cause", "")),
            "fix": str(done.get("fix", ""))}


async def overview(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    store = console.engine.store
    open_ = [summary(console, i) for i in context.incidents(request, store.open_incidents())]
    order = {"critical": 0, "high": 1, "low": 2}
    open_.sort(key=lambda s: (order.get(str(s["inc"].severity), 3), -s["inc"].opened_at))
    recent = [summary(console, i) for i in context.incidents(
        request, store.incidents(limit=30 if context.scope(request) is None else 500))
        if not i.is_open][:10]
    return page(request, "console/overview.html", title="Incidents", open=open_, recent=recent,
                snoozes=SNOOZES, public=console.site is not None)


def _channels(raw: str) -> list[str]:
    try:
        found = json.loads(raw)
    except ValueError:
        return []
    return [str(c) for c in found] if isinstance(found, list) else []


async def incident_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    store = console.engine.store
    inc = store.incident(int(request.match_info["id"]))
    if inc is None:
        return refuse(request, "There is no such incident.", 404)
    timeline = store.timeline(inc.id)
    # Per channel, what each delivery attempt said: the outbox's timeline entries.
    results: dict[str, list[dict[str, Any]]] = {}
    for e in timeline:
        mid, channels = e.data.get("message_id"), e.data.get("channels")
        if isinstance(mid, str) and isinstance(channels, list):
            results.setdefault(mid, []).extend(
                {"at": e.at, "channel": str(c.get("channel", "?")), "ok": bool(c.get("ok")),
                 "detail": str(c.get("detail", ""))} for c in channels if isinstance(c, dict))
    messages = [{"m": m, "dead": _channels(m.dead_channels), "results": results.get(m.id, [])}
                for m in store.messages(inc.id)]
    public = (console.site is not None and inc.is_open
              and bool(console.site.of(inc).publisher.components_of(inc)))
    return page(request, "console/incident.html", title=f"Incident #{inc.id}",
                s=summary(console, inc, timeline), timeline=timeline, messages=messages,
                actions=store.actions(incident_id=inc.id), snoozes=SNOOZES, public=public,
                contacts=sorted(c for c in console.engine.config.contacts
                                if context.mine(request, c)))


def _field(form: Any, name: str, required: bool = False) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ActionError(f"{name} must be text of at most {MAX_TEXT} characters")
    if webguard.unstorable(value):  # a NUL or a lone surrogate: PostgreSQL refuses it
        raise ActionError(f"{name} must not contain NUL characters or invalid Unicode")
    value = value.strip()
    if required and not value:
        raise ActionError(f"{name} is required")
    return value


async def act(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    engine, who = console.engine, person(request)
    incident_id, action = int(request.match_info["id"]), request.match_info["action"]
    form = await request.post()
    try:
        if action == "ack":
            engine.acknowledge(incident_id, by=who, via=Via.CONSOLE)
        elif action == "resolve":
            engine.resolve(incident_id, by=who, cause=_field(form, "cause", True),
                           fix=_field(form, "fix", True), via=Via.CONSOLE)
        elif action == "note":
            engine.note(incident_id, by=who, text=_field(form, "text", True), via=Via.CONSOLE)
        elif action == "escalate":
            engine.escalate_now(incident_id, by=who, via=Via.CONSOLE)
        elif action == "snooze":
            minutes = _field(form, "minutes", True)
            if not minutes.isdigit() or int(minutes) not in SNOOZES:
                raise ActionError("choose one of the snooze durations offered")
            engine.snooze(incident_id, by=who, via=Via.CONSOLE, seconds=int(minutes) * 60.0)
        elif action == "action":
            engine.add_action(incident_id, text=_field(form, "text", True),
                              owner=_field(form, "owner", True), by=who, via=Via.CONSOLE)
        elif action == "public":
            if console.site is None:
                return refuse(request, "There is no status page to post on.", 404)
            found = console.engine.store.incident(incident_id)
            site = console.site.of(found) if found is not None else console.site
            site.publisher.post_update(incident_id, _field(form, "text", True), who,
                                               via=Via.CONSOLE)
        else:
            return refuse(request, "There is no such action.", 404)
    except ActionError as exc:
        return refuse(request, f"{str(exc)[:1].upper()}{str(exc)[1:]}.", exc.status)
    except NoticeError as exc:
        return refuse(request, f"{exc}.", 400)
    return redirect(f"/console/incidents/{incident_id}")


async def action_done(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    aid = int(request.match_info["id"])
    found = next((a for a in console.engine.store.actions() if a.id == aid), None)
    try:
        console.engine.finish_action(aid, by=person(request), via=Via.CONSOLE)
    except ActionError as exc:
        return refuse(request, f"{exc}.", exc.status)
    return redirect(f"/console/incidents/{found.incident_id}" if found else "/console")
