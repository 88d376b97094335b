"""Who is on call now and next, per role, and each person's calendar feed (iCalendar).

- GET /console/on-call: every role; a role with a rotation shows who holds
  the shift now, until when, and who is next; a role without one pages all
  its contacts. Each contact has a calendar feed link (their own secret URL).
- GET /console/calendar/<token>.ics: the person's shifts of the next
  `HORIZON_DAYS` (at most `MAX_EVENTS`), one VEVENT each, for any calendar app
  to subscribe to. The token is the person's name sealed with the agent's key
  (agent/links.py): it cannot be guessed or changed into another person's,
  needs no session (calendar apps have none), and is void when the key is.
  Shifts are computed from the rotation (agent/calendar.py), so the feed
  follows the config as it is now.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from icalendar import Calendar, Event

from agent import links, pages
from agent.calendar import on_call
from agent.console import context
from agent.console.context import CONSOLE_KEY, Console, page, refuse
from agent.policy import Role, Rotation

HORIZON_DAYS = 60
MAX_EVENTS = 100


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/on-call", on_call_page)
    app.router.add_get("/console/calendar/{token}.ics", feed)


def feed_path(key: bytes, person: str) -> str:
    return f"/console/calendar/{links.seal(key, f'ical|{person}'.encode())}.ics"


def shifts(rotation: Rotation, person: str, now: float, horizon: float
           ) -> list[tuple[float, float]]:
    """(start, end) of `person`'s shifts overlapping [now, now + horizon)."""
    start, n = rotation.start.timestamp(), len(rotation.contacts)
    out: list[tuple[float, float]] = []
    first = math.floor((now - start) / rotation.shift)
    last = math.floor((now + horizon - start) / rotation.shift)
    for k in range(first, min(last, first + MAX_EVENTS * n) + 1):
        if rotation.contacts[k % n] == person:
            out.append((start + k * rotation.shift, start + (k + 1) * rotation.shift))
    return out[:MAX_EVENTS]


def roles_now(console: Console, now: float, roles: Iterable[Role] | None = None
              ) -> list[dict[str, Any]]:
    roles = console.engine.config.escalation.roles.values() if roles is None else roles
    out = []
    for role in roles:
        r = role.rotation
        if r is None or not r.contacts:
            out.append({"name": role.name, "rotation": False, "everyone": role.contacts})
            continue
        k = math.floor((now - r.start.timestamp()) / r.shift)
        handover = r.start.timestamp() + (k + 1) * r.shift
        out.append({"name": role.name, "rotation": True, "now": on_call(r, now),
                    "until": handover, "next": on_call(r, handover)})
    return out


async def on_call_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    now, key = console.engine.clock(), console.engine.link_key
    feeds = [(name, console.public_url() + feed_path(key, name))
             for name in sorted(console.engine.config.contacts) if context.mine(request, name)]
    roles = [r for r in console.engine.config.escalation.roles.values()
             if context.mine(request, r.name)]
    return page(request, "console/on_call.html", title="On call",
                roles=roles_now(console, now, roles), feeds=feeds)


def ics(console: Console, person: str, now: float) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//onwatch//on-call//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"On call: {person}")
    horizon = HORIZON_DAYS * 86400.0
    for role in console.engine.config.escalation.roles.values():
        if role.rotation is None or person not in role.rotation.contacts:
            continue
        for begin, end in shifts(role.rotation, person, now, horizon):
            ev = Event()
            ev.add("uid", f"onwatch-{role.name}-{int(begin)}-{person}@onwatch")
            ev.add("summary", f"On call: {role.name}")
            ev.add("dtstart", dt.datetime.fromtimestamp(begin, dt.UTC))
            ev.add("dtend", dt.datetime.fromtimestamp(end, dt.UTC))
            ev.add("dtstamp", dt.datetime.fromtimestamp(now, dt.UTC))
            cal.add_component(ev)
    return bytes(cal.to_ical())


async def feed(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    try:
        body = links.unseal(console.engine.link_key, request.match_info["token"])
    except links.LinkError:
        return refuse(request, "This calendar link is not valid.", 404)
    person = body.decode(errors="replace").removeprefix("ical|")
    if not body.startswith(b"ical|") or person not in console.engine.config.contacts:
        return refuse(request, "This calendar link is not valid.", 404)
    return pages.respond(ics(console, person, console.engine.clock()),
                         content_type="text/calendar", cache="private, max-age=300")
