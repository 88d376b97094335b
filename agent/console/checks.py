"""The console's checks and maintenance windows.

- GET /console/checks: every check: its state (up, down, unknown; in
  maintenance), its last result (when, ok or why not, latency) and its latency
  over the last day as a small inline SVG (console/latency.py keeps the
  points; in memory, so after a restart the chart starts from then).
- GET /console/maintenance: windows current and to come (the config's and
  those opened at run time), and a form to open one; POST
  /console/maintenance starts one (checks and/or tags, a duration, a reason),
  POST /console/maintenance/<id>/end ends one opened at run time. Both are
  the engine's calls, made as the session's person.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent import webguard
from agent.console import context
from agent.console.context import CONSOLE_KEY, page, redirect, refuse
from agent.console.guard import person
from agent.console.latency import chart
from agent.detect.maintenance import active_window
from agent.errors import ActionError
from agent.fields import parse_duration

#: The longest window the console opens (a longer one is a typo).
MAX_WINDOW_S = 7 * 86400.0


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/checks", checks_page)
    app.router.add_get("/console/maintenance", maintenance_page)
    app.router.add_post("/console/maintenance", maintenance_start)
    app.router.add_post(r"/console/maintenance/{id:\d{1,12}}/end", maintenance_end)


async def checks_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    now, runner = console.engine.clock(), console.runner
    windows = (*console.engine.config.maintenance, *console.engine.runtime_windows(now))
    rows: list[dict[str, Any]] = []
    for c in context.checks(request):
        last = console.latency.last.get(c.name)
        w = active_window(windows, c.name, c.tags, now)
        rows.append({"name": c.name, "type": c.type, "health": str(runner.health(c.name)),
                     "maintenance": w is not None, "last": last,
                     "chart": chart(console.latency.points(c.name, now), now),
                     "open": console.engine.open_for_check(c.name),
                     "locations": [{"name": loc, "health": str(h), "reason": why}
                                   for loc, h, why in runner.locations.views(c)]
                     if c.remote else []})
    young = now - runner.started_at < 86400.0
    return page(request, "console/checks.html", title="Checks", rows=rows, young=young)


async def maintenance_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    now, cfg = console.engine.clock(), console.engine.config
    runtime = console.engine.store.maintenance(now)
    configured = [w for w in cfg.maintenance if w.weekly is not None or (w.end or 0) > now]
    mine = context.checks(request)
    if context.scope(request) is not None:  # a client's own windows, by check (not tag)
        runtime = [w for w in runtime if context.window_mine(request, w["checks"], w["tags"])]
        configured = [w for w in configured if not w.tags and w.checks
                      and all(context.mine(request, n) for n in w.checks)]
    tags = sorted({t for c in mine for t in c.tags}) if context.scope(request) is None else []
    return page(request, "console/maintenance.html", title="Maintenance", runtime=runtime,
                configured=configured, checks=[c.name for c in mine], tags=tags, now=now)


async def maintenance_start(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    cfg = console.engine.config
    form = await request.post()
    checks = [v for v in form.getall("check", []) if isinstance(v, str) and v]
    tags = [v for v in form.getall("tag", []) if isinstance(v, str) and v]
    if not context.window_mine(request, checks, tags):
        return refuse(request, "Choose checks of your own (tags are the provider's).", 403)
    known, known_tags = {c.name for c in cfg.checks}, {t for c in cfg.checks for t in c.tags}
    unknown = [c for c in checks if c not in known] + [t for t in tags if t not in known_tags]
    if unknown or not (checks or tags):
        return refuse(request, f"Unknown check or tag {unknown[0]!r}." if unknown
                      else "Choose at least one check or tag.", 400)
    raw_for, reason = form.get("for", ""), form.get("reason", "")
    duration = parse_duration(raw_for) if isinstance(raw_for, str) else None
    if duration is None or not 0 < duration <= MAX_WINDOW_S:
        return refuse(request, 'Give how long as a duration like "2h" (at most 7 days).', 400)
    reason = reason.strip()[:500] if isinstance(reason, str) else ""
    if webguard.unstorable(reason):  # a NUL or a lone surrogate: PostgreSQL refuses it
        return refuse(request, "The reason must not contain NUL characters or invalid "
                               "Unicode.", 400)
    console.engine.start_maintenance(checks=checks, tags=tags, duration=duration, reason=reason,
                                     by=person(request))
    return redirect("/console/maintenance")


async def maintenance_end(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    try:
        console.engine.end_maintenance(int(request.match_info["id"]), by=person(request))
    except ActionError as exc:
        return refuse(request, f"{exc}.", exc.status)
    return redirect("/console/maintenance")
