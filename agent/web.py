"""The agent's HTTP face: /metrics for Prometheus, /healthz for load balancers and systemd.

Listens on loopback by default (`[agent] listen`). /metrics is the agent's
registry and its per-check series (`agent.metrics`), in Prometheus's text
format, gzipped off the event loop when the scraper asks.
/healthz answers 200 with a small JSON summary while the agent runs and
503 once it is shutting down, so a supervisor can tell the two apart.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import html
import re
import time

import structlog
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from agent import api, web_intake, webguard
from agent.runner import Runner
from checks import heartbeat
from checks.base import ProbeContext

log = structlog.get_logger(__name__)

RUNNER_KEY = web.AppKey("runner", Runner)
CTX_KEY = web.AppKey("probe_ctx", ProbeContext)
Inbox = collections.deque[tuple[float, str, str, str]]
_URL = re.compile(r"https?://[^\s<>\"']+")
INBOX_KEY: web.AppKey[Inbox] = web.AppKey("inbox")
INBOX_SIZE = 100
STOPPING_KEY = web.AppKey("stopping", list[bool])


def build_app(runner: Runner, api_token: str, ctx: ProbeContext | None = None
              ) -> web.Application:
    """The agent's app; `ctx` is the probes' shared context (push checks write into it)."""
    app = web.Application(client_max_size=64 * 1024)
    app[CTX_KEY] = ctx or ProbeContext()
    webguard.install(app)
    api.add_routes(app, runner.engine, api_token)
    web_intake.add_routes(app, runner.engine, api_token)
    app[RUNNER_KEY] = runner
    app[INBOX_KEY] = collections.deque(maxlen=INBOX_SIZE)
    app[STOPPING_KEY] = [False]
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/inbox", inbox_post)
    app.router.add_post("/inbox/{who}", inbox_post)
    app.router.add_get("/inbox", inbox_get)
    app.router.add_route("*", "/heartbeat/{check}", heartbeat_handler)
    return app


async def metrics_handler(request: web.Request) -> web.Response:
    """The Prometheus text (0.0.4), gzipped when asked. The parts are taken on the loop
    (where the values change); joining and compressing them, the costly half at
    thousands of checks, runs in a worker thread, so a scrape never delays a check."""
    parts = request.app[RUNNER_KEY].metrics.exposition_parts()
    gz = "gzip" in request.headers.get("Accept-Encoding", "")
    body = await asyncio.get_running_loop().run_in_executor(None, _encode, parts, gz)
    headers = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
    if gz:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


def _encode(parts: list[bytes], gz: bool) -> bytes:
    body = b"".join(parts)
    # Level 1: a tenth of level 6's CPU for a slightly bigger body (the text repeats a lot).
    return gzip.compress(body, compresslevel=1) if gz else body


async def healthz(request: web.Request) -> web.Response:
    runner = request.app[RUNNER_KEY]
    stopping = request.app[STOPPING_KEY][0]
    checks = runner.config.checks
    down = runner.down_checks()  # kept by the runner: no scan of every check per request
    body: dict[str, object] = {
        "status": "stopping" if stopping else "ok",
        "uptime_s": round(runner.clock() - runner.started_at, 1),
        "checks": len(checks),
        "checks_down": down,
        # With several instances on one PostgreSQL store, one leads (agent/leader.py).
        "role": "leader" if runner.engine.leading else "standby",
    }
    remote = [c for c in checks if c.remote]
    if remote:  # what each location sees (agent/locations.py); one alone pages nobody
        body["locations"] = {c.name: {loc: str(h) for loc, h, _ in runner.locations.views(c)}
                             for c in remote}
    store_problem = runner.engine.pending.problem
    if store_problem is not None:  # pages still go out, but nothing is kept: say so
        body.update(status="store_failing", store_error=store_problem)
    return web.json_response(body, status=503 if stopping or store_problem else 200)


async def heartbeat_handler(request: web.Request) -> web.Response:
    """A push check's ping: GET or POST /heartbeat/<check>?token=... (or a Bearer token).

    The rules are checks/heartbeat.py's: 404 unless <check> is a heartbeat check, 403 and
    nothing recorded for a wrong or missing token. The token is never logged.
    """
    if request.method not in ("GET", "POST"):
        return web.json_response({"error": "use GET or POST"}, status=405,
                                 headers={"Allow": "GET, POST"})
    name = request.match_info["check"]
    check = request.app[RUNNER_KEY].config.check(name)
    if check is None or check.type != "heartbeat":
        return web.json_response({"error": "no heartbeat check by that name"}, status=404)
    token = heartbeat.presented(request.query.get("token"), request.headers.get("Authorization"))
    if not heartbeat.authorized(check.spec, token):
        log.warning("heartbeat_refused", check=name, token_given=token is not None)
        return web.json_response({"error": "wrong or missing token"}, status=403)
    ctx = request.app[CTX_KEY]
    ctx.heartbeats[name] = ctx.clock()
    log.info("heartbeat_received", check=name)
    return web.json_response({"ok": True, "check": name})


async def inbox_post(request: web.Request) -> web.Response:
    """A local receiver for Apprise's `json://` notifications.

    So that a fresh install with no SMS or push account can show its pages:
    `config.example.toml` points its contacts at `json://127.0.0.1:9847/inbox/<who>`,
    and the last INBOX_SIZE messages are readable at GET /inbox, links clickable.
    """
    try:
        payload = await request.json()
    except (ValueError, RecursionError):  # a body nested thousands deep is not a page
        return web.json_response({"error": "expected the JSON body Apprise sends"}, status=400)
    if not isinstance(payload, dict):
        return web.json_response({"error": "expected a JSON object"}, status=400)
    who = request.match_info.get("who", "")
    title, body = str(payload.get("title", "")), str(payload.get("message", ""))
    request.app[INBOX_KEY].append((time.time(), who, title, body))
    log.warning("inbox_message", to=who, title=title)
    return web.json_response({"stored": True})


def _linkify(text: str) -> str:
    return _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', html.escape(text))


async def inbox_get(request: web.Request) -> web.Response:
    inbox: Inbox = request.app[INBOX_KEY]
    items = "".join(
        f"<article><h3>{html.escape(t)}</h3><small>to {html.escape(who or '(anyone)')}, "
        f"received {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))}</small>"
        f"<pre>{_linkify(b)}</pre></article>"
        for at, who, t, b in reversed(inbox)
    ) or "<p>No notifications yet.</p>"
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>onwatch inbox</title>"
            f"<meta http-equiv=refresh content=10></head><body><h1>onwatch inbox</h1>"
            f"<p>The last {INBOX_SIZE} notifications sent to json://&lt;this agent&gt;/inbox."
            f"</p>{items}</body></html>")
    return web.Response(text=page, content_type="text/html")


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner and the address actually bound (port 0 allowed)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    h, p = bound[0], bound[1]
    return runner, (f"[{h}]:{p}" if ":" in h else f"{h}:{p}")
