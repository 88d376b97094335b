"""The status page's part of `onwatch run`: which listener serves what, and the service.

The public listener gets an allow-list, nothing else.

Public (`[web] public_listen`): what the outside world needs, and only that:
    GET  /  /status  /incidents  /incidents/{id}  /status.json  /feed.atom
    GET  /badge/{component}.svg  /logo
    POST /subscribe, GET|POST /subscribe/confirm/{token}, GET|POST /unsubscribe/{token}
    GET|POST /ack/{token}             (acknowledgement links in pages)
    GET|POST /heartbeat/{check}       (push checks)
    GET /probe/v1/checks, POST /probe/v1/results   (remote probes, signed: agent/probe_intake.py)
    /console/...                      (signed-in people: agent/console)
Everything else answers 404 there: /metrics, /healthz (it names checks),
/api/v1, /inbox. The private listener (`[agent] listen`, loopback by default)
serves everything, the status page included, plus the API's public-update
route (`POST /api/v1/incidents/{id}/public`, behind the API's bearer token).

Without `public_listen` nothing changes: the private listener serves it all.

The daemon makes one `StatusService` after the engine and runner exist and
calls four things: `wrap(handler)` around the scheduler's result handler
(the uptime rollup sees every run after the runner has), `public_url = ...`
once the listeners are bound, `start()` and `stop()`. The engine's hook
(`Publisher.on_incident`) is registered here, so the notices of an incident
change are stored in the engine's own transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from agent import api, console, probe_intake, webguard
from agent import web as webmod
from agent.config import CheckConfig, Config
from agent.console import Console
from agent.pages import status_routes, subscribe_routes
from agent.pages.site import Site
from agent.probe_intake import ProbeHub
from agent.runner import Runner
from agent.status.mailer import Mailer
from agent.status.notices import NoticeError, Publisher
from agent.status.subscriptions import Subscriptions
from agent.status.uptime import Rollup, recorder
from agent.store.status import StatusStore
from checks.base import ProbeContext
from checks.result import CheckResult

PUBLIC_MAX_BODY = 16 * 1024


def public_app(runner: Runner, ctx: ProbeContext, site: Site | None,
               desk: Console | None = None, probes: ProbeHub | None = None
               ) -> web.Application:
    app = web.Application(client_max_size=PUBLIC_MAX_BODY)
    app[webmod.RUNNER_KEY] = runner
    app[webmod.CTX_KEY] = ctx
    app[api.ENGINE_KEY] = runner.engine
    app.router.add_get("/ack/{token}", api.ack_page)
    app.router.add_post("/ack/{token}", api.ack_post)
    app.router.add_route("*", "/heartbeat/{check}", webmod.heartbeat_handler)
    if site is not None:
        status_routes.add_routes(app, site)
        subscribe_routes.add_routes(app)
    if desk is not None:
        console.mount(app, desk)
    if probes is not None:
        probe_intake.mount(app, probes)
    return app


def add_private(app: web.Application, site: Site) -> None:
    """The status page and its API on the private listener too."""
    status_routes.add_routes(app, site)
    subscribe_routes.add_routes(app)
    app.router.add_post(r"/api/v1/incidents/{id:\d+}/public", api_public_update)


def _error(text: str, status: int) -> web.Response:
    return web.json_response({"error": text}, status=status)


async def api_public_update(request: web.Request) -> web.Response:
    """`{"text": "...", "by": "..."}`: a person's words on the status page (and to subscribers)."""
    site = request.app[status_routes.SITE_KEY]
    body = await webguard.json_body(request)  # UTF-8, bounded depth, storable: else 400
    text, by = body.get("text", ""), body.get("by", "api")
    if not isinstance(text, str) or not isinstance(by, str) or len(by) > 200:
        return _error("text and by must be strings", 400)
    person = request.get(api.PERSON)  # a personal token: its person posts, not `by`
    by = person if isinstance(person, str) else by
    incident_id = int(request.match_info["id"])
    try:
        found = site.engine.store.incident(incident_id)
        site = site.of(found) if found is not None else site  # a client's page for its own
        nid = site.publisher.post_update(incident_id, text, by.strip() or "api")
    except NoticeError as exc:
        return _error(str(exc), 404 if str(exc).startswith("no incident") else 400)
    return web.json_response({"incident": incident_id, "notice": nid,
                              "url": f"{site.public_url}{site.root}/incidents/{incident_id}"},
                             status=201)


Handler = Callable[[CheckConfig, CheckResult, float], bool]


class StatusService:
    def __init__(self, config: Config, runner: Runner, link_key: bytes,
                 clock: Callable[[], float]) -> None:
        engine = runner.engine
        self.store = StatusStore(engine.store)
        self.publisher = Publisher(config, self.store, link_key, clock)
        self.subscriptions = Subscriptions(self.store, config.status.email, link_key,
                                           config.status.title)
        self.rollup = Rollup(self.store, config.agent.tz)
        self.site = Site(config, engine, self.store, self.publisher, self.subscriptions,
                         self.rollup, clock)
        self.site.tenant_sites = status_routes.tenant_sites(
            config, engine, self.store, link_key, clock, self.subscriptions, self.rollup)
        self._record = recorder(self.rollup, runner.health, self.site.windows, clock)
        engine.hooks.append(self.publisher.on_incident)
        self.mailer = (Mailer(self.store, config.status.email, config.delivery,
                              self.publisher.mail_wakeup, clock)
                       if config.status.email is not None else None)
        if self.mailer is not None:
            self.mailer.may_send = lambda: engine.leading
        self._stop = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    @property
    def public_url(self) -> str:
        return self.publisher.public_url

    @public_url.setter
    def public_url(self, url: str) -> None:
        self.publisher.public_url = url
        self.subscriptions.public_url = url
        for site in self.site.tenant_sites.values():
            site.publisher.public_url = url

    def wrap(self, handler: Handler) -> Handler:
        def on_result(check: CheckConfig, result: CheckResult, lateness: float) -> bool:
            again = handler(check, result, lateness)
            if self.site.engine.leading:  # a standby's results would count the time twice
                self._record(check, result.checked_at)
            return again

        return on_result

    def start(self) -> None:
        self.site.housekeeping()  # announce what is due now, without waiting a round
        self._loop = asyncio.create_task(self.site.status_loop(self._stop), name="status")
        if self.mailer is not None:
            self.mailer.start()

    async def stop(self, grace: float) -> None:
        self._stop.set()
        if self._loop is not None:
            await asyncio.wait({self._loop}, timeout=grace)
        self.rollup.flush(self.site.clock())  # the last minute of uptime accounting
        if self.mailer is not None:
            await self.mailer.stop(grace)
