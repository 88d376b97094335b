"""What a signed-in person may see in the console: their tenant's, or everything.

Contract: the provider's staff (the config's top-level contacts) see every
incident, check, window and role; a tenant's contact sees that tenant's
only (agent/tenancy.py decides whose a name is). The middleware, which runs
after the guard, answers 404 "no such incident" for any page or form under
/console/incidents/<id> or /console/actions/<id> that is not the person's,
before a handler runs, so no action can reach another client's incident;
the list pages filter with `scope` and the helpers here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent import tenancy
from agent.config import CheckConfig
from agent.console import guard
from agent.console.context import CONSOLE_KEY, refuse
from agent.incidents import Incident

_INCIDENT = re.compile(r"/console/incidents/(\d{1,12})(/|$)")
_ACTION = re.compile(r"/console/actions/(\d{1,12})/")
_WINDOW = re.compile(r"/console/maintenance/(\d{1,12})/")


def scope(request: web.Request) -> str | None:
    """The signed-in person's tenant; None: the provider's staff (everything)."""
    who = request.get(guard.PERSON_KEY)
    config = request.app[CONSOLE_KEY].engine.config
    return tenancy.of_person(config, who) if isinstance(who, str) else tenancy.NOBODY


def incidents(request: web.Request, found: Iterable[Incident]) -> list[Incident]:
    return tenancy.visible(request.app[CONSOLE_KEY].engine.config, scope(request), found)


def checks(request: web.Request) -> tuple[CheckConfig, ...]:
    return tenancy.checks_of(request.app[CONSOLE_KEY].engine.config, scope(request))


def mine(request: web.Request, name: str) -> bool:
    """A contact, role or check name of the person's tenant (any, for the provider's)."""
    s = scope(request)
    return s is None or tenancy.of_name(request.app[CONSOLE_KEY].engine.config, name) == s


def _allowed(request: web.Request) -> bool:
    engine = request.app[CONSOLE_KEY].engine
    s = scope(request)
    if s is None:
        return True
    if (m := _INCIDENT.match(request.path)) is not None:
        inc = engine.store.incident(int(m[1]))
        return inc is not None and tenancy.sees(engine.config, s, inc)
    if (m := _ACTION.match(request.path)) is not None:
        action = next((a for a in engine.store.actions() if a.id == int(m[1])), None)
        inc = engine.store.incident(action.incident_id) if action is not None else None
        return inc is not None and tenancy.sees(engine.config, s, inc)
    if (m := _WINDOW.match(request.path)) is not None:
        window = next((w for w in engine.store.maintenance(engine.clock())
                       if w["id"] == int(m[1])), None)
        return window is not None and window_mine(request, window["checks"], window["tags"])
    return True


def window_mine(request: web.Request, names: list[str], tags: list[str]) -> bool:
    """A tenant's window names its own checks only (a tag may span clients)."""
    return scope(request) is None or (not tags and bool(names)
                                      and all(mine(request, n) for n in names))


def middleware() -> Middleware:
    @web.middleware
    async def scoped(request: web.Request, handler: guard.Handler) -> web.StreamResponse:
        if (request.path.startswith("/console/") and guard.PERSON_KEY in request
                and not _allowed(request)):
            return refuse(request, "There is no such incident.", 404)
        return await handler(request)

    return scoped
