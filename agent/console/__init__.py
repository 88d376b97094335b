"""The incident console: signed-in people at /console, on the public listener.

Server-rendered (Jinja2, templates/console/ in agent/pages), readable on a
phone, no JavaScript. Routes, each module stating its own contract:

    signin.py      GET|POST /console/sign-in, GET|POST /console/link/<secret>,
                   POST /console/sign-out
    incidents.py   GET /console, GET /console/incidents/<id>,
                   POST /console/incidents/<id>/<ack|resolve|note|public|escalate|
                   snooze|action>, POST /console/actions/<id>/done
    documents.py   GET /console/incidents/<id>/report, GET /console/review
    people.py      GET /console/on-call, GET /console/calendar/<token>.ics
    checks.py      GET /console/checks, GET|POST /console/maintenance,
                   POST /console/maintenance/<id>/end

`guard.py` stands in front of all of them: a session for every page, the
same origin and a CSRF token for every POST. The daemon makes one `Console`
(`build`), mounts it on the public listener and the private one (`mount`),
and feeds each check result to `record` (the latency charts).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from agent.config import CheckConfig
from agent.console import checks, context, documents, guard, incidents, people, signin
from agent.console.context import CONSOLE_KEY, Console, refuse
from agent.console.latency import LatencyHistory
from agent.pages.site import Site
from agent.runner import Runner
from agent.store.auth import AuthStore
from checks.result import CheckResult

__all__ = ["Console", "build", "mount", "wrap"]

Handler = Callable[[CheckConfig, CheckResult, float], bool]


def build(runner: Runner, site: Site | None) -> Console:
    return Console(runner.engine, runner, AuthStore(runner.engine.store), LatencyHistory(),
                   site=site)


def mount(app: web.Application, console: Console) -> None:
    """The console's routes and guard on `app` (call once per listener)."""
    app[CONSOLE_KEY] = console
    app.middlewares.append(guard.middleware(
        lambda secret: _known(console, console.auth.session(secret, console.engine.clock())),
        console.engine.link_key, console.public_url, refuse))
    app.middlewares.append(context.middleware())  # after the guard: it needs the person
    for module in (signin, incidents, documents, people, checks):
        module.add_routes(app)


def _known(console: Console, person: str | None) -> str | None:
    """A session's person while the config still has them: removing someone from the
    config (and reloading) ends their sessions at their next request."""
    return person if person is not None and person in console.engine.config.contacts else None


def wrap(console: Console, handler: Handler) -> Handler:
    """The scheduler's result handler, with the result kept for the console's charts."""

    def on_result(check: CheckConfig, result: CheckResult, lateness: float) -> bool:
        again = handler(check, result, lateness)
        console.latency.record(check.name, result, result.checked_at or console.engine.clock())
        return again

    return on_result

