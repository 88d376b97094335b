"""What every console handler reaches: the `Console` (made once by the daemon) and how a
console page is rendered.

`page(request, template, ...)` renders a template under templates/console/ with
what the layout needs (the signed-in person, the CSRF token for its forms, the
site's title) and the pages' security headers (agent/pages: a CSP with no
scripts, no framing). Console pages are never cached and never indexed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent import pages
from agent.console import guard
from agent.console.latency import LatencyHistory
from agent.engine import Engine
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
