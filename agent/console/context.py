"""What every console handler reaches: the `Console` (made once by the daemon) and how a
console page is rendered.

`page(request, template, ...)` renders a template under templates/console/ with
what the layout needs (the signed-in person, the CSRF token for its forms, the
site's title) and the pages' security headers (agent/pages: a CSP with no
scripts, no framing). Console pages are never cached and never indexed.

What a signed-in person may see (`scope`, `middleware`): the provider's
staff (the config's top-level contacts) see every incident, check, window
and role; a tenant's contact sees that tenant's only (agent/tenancy.py
decides whose a name is). The middleware, which runs after the guard,
answers 404 "no such incident" for any page or form under
/console/incidents/<id>, /console/actions/<id> or /console/maintenance/<id>
that is not the person's, before a handler runs, so no action can reach
another client's incident; the list pages filter with `scope` and the
helpers here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent import pages, tenancy
from agent.config import CheckConfig
from agent.console import guard
from agent.console.latency import LatencyHistory
from agent.engine import Engine
from agent.incidents import Incident
from agent.pages.site import Site
from agent.runner import Runner
from agent.store.auth import AuthStore

NO_INDEX = {"X-Robots-Tag": "noindex", "Referrer-Policy": "same-origin"}


@dataclass
class Console:
    engine: Engine
    runner: Runner
    auth: AuthStore
    latency: LatencyHistory
    #: The status page's site (public updates, components); None without one.
    site: Site | None = None
    #: Sign-in deliveries in flight (kept so that they are not garbage-collected).
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def public_url(self) -> str:
        """Where people reach the agent (`[agent] public_url`, else the listener's address;
        the daemon sets it once the listeners are bound)."""
        return self.engine.public_url

    @property
    def title(self) -> str:
        return self.site.status.title if self.site is not None else "onwatch"

    def when(self, ts: float | None) -> str:
        """A time as people read it, on the agent's clock ("Tue 1 Dec 14:05")."""
        if ts is None:
            return "-"
        local = dt.datetime.fromtimestamp(ts, self.engine.config.agent.tz)
        return local.strftime("%a %-d %b %H:%M")


CONSOLE_KEY = web.AppKey("console", Console)


def page(request: web.Request, template: str, *, status: int = 200,
         headers: dict[str, str] | None = None, **context: Any) -> web.Response:
    console = request.app[CONSOLE_KEY]
    who = request.get(guard.PERSON_KEY)
    body = pages.render(template, site_title=f"{console.title} console", has_logo=False,
                        me=who, csrf=guard.csrf_token(request, console.engine.link_key),
                        when=console.when, **context)
    return pages.respond(body, status=status, extra={**NO_INDEX, **(headers or {})})


def refuse(request: web.Request, text: str, status: int) -> web.Response:
    """A refusal page (403, 404, 409, 410): says why, changes nothing."""
    return page(request, "console/message.html", status=status, title="Not done",
                heading="Not done", text=text)


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs the page that shows the result."""
    return web.Response(status=303, headers={"Location": location, **NO_INDEX})


# -- what the signed-in person may see --------------------------------------------

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
