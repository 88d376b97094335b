"""The status page's routes: /, /status, /incidents, /status.json, /feed.atom, badges, logo.

Every one renders the same cached `StatusView` (pages/site.py), so they agree
with each other and none can show what the view does not hold: component
names and public notices, nothing internal. Bodies are cached for the
site's ttl: a thousand requests a second render the page about once.

/status.json is a stable, documented schema (docs/status-json.md): fields
are only ever added; `schema_version` changes if one ever has to change.

Each tenant's own status page (its components only, at /status/<name> and on its
host): a tenant's page is a `Site` (pages/site.py) of its own, with the
tenant's `[status]` (title, components), its time zone, and a `Publisher`
of its own that writes public notices for its components' incidents, so
every surface of the page (HTML, status.json, the feed, badges) is built the
same way as the provider's and from nothing but its own components and
notices. Component slugs are `<tenant>--<slug>` (agent/config_tenants.py),
so notices in the one shared table say whose they are; each site shows only
notices naming one of its own components, and the provider's page none of a
tenant's. Uptime comes from the shared rollup (recorded per check already).

A request reaches a tenant's page by path (`/status/acme`, `/status/acme/
incidents`, ...: `root` is that prefix in every link) or by its Host header
(`[status] host = "status.acme.example"`: the page at `/`, `root` is "").
Subscriptions by e-mail are the provider's page's only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from agent import pages
from agent.config import Config
from agent.config_status import LOGO_TYPES
from agent.engine import Engine
from agent.fields import split_host_port
from agent.pages.site import Site
from agent.status.notices import Publisher
from agent.status.subscriptions import Subscriptions
from agent.status.uptime import Rollup
from agent.status.view import ComponentView, StatusView, iso
from agent.store.status import StatusStore
from agent.vocab import ComponentState

SITE_KEY = web.AppKey("status_site", Site)
SCHEMA_VERSION = 1
#: Days per component whose bar carries a tooltip of its own (the worst ones).
MARKED = 3
PAGE_CACHE = "public, max-age=5"
#: Bar colours by day class; ok/minor/major meet 3:1 against white (WCAG non-text contrast).
PATTERNS = (("ok", "#2da44e"), ("minor", "#bf8700"), ("major", "#cf222e"), ("none", "#d0d7de"))
BADGE_COLOURS = {
    ComponentState.OPERATIONAL: "#1a7f37", ComponentState.DEGRADED: "#9a6700",
    ComponentState.PARTIAL_OUTAGE: "#bc4c00", ComponentState.MAJOR_OUTAGE: "#cf222e",
    ComponentState.UNDER_MAINTENANCE: "#0550ae",
}


def add_routes(app: web.Application, site: Site) -> None:
    app[SITE_KEY] = site
    app.router.add_get("/", page)
    app.router.add_get("/status", page)
    app.router.add_get("/incidents", incidents_page)
    app.router.add_get(r"/incidents/{key:(m-)?\d{1,12}}", incident_page)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/feed.atom", feed)
    app.router.add_get("/badge/{slug}.svg", badge)
    app.router.add_get("/logo", logo)
    # Each tenant's page (below): the same routes under /status/<name>.
    tenant = "/status/{tenant:[A-Za-z0-9_-]{1,32}}"
    app.router.add_get(tenant, page)
    app.router.add_get(tenant + "/incidents", incidents_page)
    app.router.add_get(tenant + r"/incidents/{key:(m-)?\d{1,12}}", incident_page)
    app.router.add_get(tenant + "/status.json", status_json)
    app.router.add_get(tenant + "/feed.atom", feed)
    app.router.add_get(tenant + "/badge/{slug}.svg", badge)
    app.router.add_get(tenant + "/logo", logo)


def _resolve(request: web.Request) -> tuple[Site, str]:
    """The page asked for (the provider's, or a tenant's by path or host) and its links' root."""
    found = site_for(request, request.app[SITE_KEY])
    if found is None:
        raise web.HTTPNotFound(text="no such status page")
    return found


def _day_label(date: str) -> str:
    return dt.date.fromisoformat(date).strftime("%a %-d %b")


def _segments(c: ComponentView) -> dict[str, Any]:
    """The component with its bars as compact SVG: one path per day class, runs of alike
    days merged (the pattern fill draws the gaps between days), and a tooltip rect on the
    MARKED worst days only, so 20 components x 90 bad days still stay a few KB."""
    runs: list[list[Any]] = []  # [css, first day, count]
    for i, day in enumerate(c.days):
        if runs and runs[-1][0] == day.css:
            runs[-1][2] += 1
        else:
            runs.append([day.css, i, 1])
    # Each run is a horizontal stroke 24 units thick ("M x 12 h width"), the next run of
    # the class a relative move from where the last one ended: about 8 bytes a run.
    paths: dict[str, str] = {}
    ends: dict[str, int] = {}
    for css, first, count in runs:
        x, w = first * 4, count * 4 - 1
        step = f"m{x - ends[css]} 0" if css in ends else f"M{x} 12"
        paths[css] = paths.get(css, "") + f"{step}h{w}"
        ends[css] = x + w
    bad = [(d.percent or 0.0, i, d) for i, d in enumerate(c.days) if d.css in ("minor", "major")]
    marks = [{"x": i * 4, "title": f"{_day_label(d.date)}: " + (
        f"{pages.percent(d.percent)} up" if d.percent is not None and d.percent < 99.95
        else "a problem going on")}
             for _, i, d in sorted(bad)[:MARKED]]
    summary = f"{pages.percent(c.uptime)} uptime over the last {len(c.days)} days"
    if bad:
        worst = sorted(bad)[0][2]
        summary += (f"; {len(bad)} day{'s' if len(bad) > 1 else ''} with problems, the worst "
                    f"{_day_label(worst.date)} ({pages.percent(worst.percent)})")
    return {"name": c.name, "slug": c.slug, "state": c.state.value, "label": c.label,
            "description": c.description, "uptime": c.uptime, "days": c.days,
            "paths": sorted(paths.items()), "marks": marks, "summary": summary}


def _common(site: Site, root: str = "") -> dict[str, Any]:
    return {"site_title": site.status.title, "has_logo": site.logo is not None,
            "tz": str(site.tz), "iso": iso, "root": root}


def render_page(site: Site, root: str = "") -> bytes:
    v = site.view()
    groups = [(g, [_segments(c) for c in comps]) for g, comps in v.groups]
    return pages.render("status.html", v=v, components=groups, patterns=PATTERNS,
                        email=site.status.email is not None, **_common(site, root)).encode()


async def page(request: web.Request) -> web.Response:
    site, root = _resolve(request)
    body = site.cached(f"page{root}", lambda: render_page(site, root))
    assert isinstance(body, bytes)
    return pages.respond(body, cache=PAGE_CACHE)


async def incidents_page(request: web.Request) -> web.Response:
    site, root = _resolve(request)
    v = site.view()
    body = pages.render("incidents.html", heading=f"Incidents of the last {v.days} days",
                        stories=(*v.active, *v.history), many=True, days=v.days,
                        **_common(site, root))
    return pages.respond(body, cache=PAGE_CACHE)


async def incident_page(request: web.Request) -> web.Response:
    site, root = _resolve(request)
    v = site.view()
    key = request.match_info["key"]
    story = next((s for s in (*v.active, *v.history) if s.key == key), None)
    if story is None:
        body = pages.render("message.html", heading="Not found", button="",
                            paragraphs=["There is no such incident on this page."],
                            **_common(site, root))
        return pages.respond(body, status=404)
    body = pages.render("incidents.html", heading=story.title, stories=(story,), many=False,
                        days=v.days, **_common(site, root))
    return pages.respond(body, cache=PAGE_CACHE)


def status_document(site: Site, v: StatusView, root: str = "") -> dict[str, Any]:
    base = site.public_url + root
    stories = (*v.active, *v.history)
    return {
        "schema_version": SCHEMA_VERSION,
        "page": {"name": v.title, "url": f"{base}/", "time_zone": str(site.tz),
                 "updated_at": iso(v.generated_at)},
        "status": {"state": v.state.value, "description": v.headline},
        "components": [{
            "id": c.slug, "name": c.name, "group": c.group or None,
            "description": c.description or None, "state": c.state.value,
            "state_label": c.label, "uptime_percent": c.uptime,
            "days": [{"date": d.date, "uptime_percent": d.percent} for d in c.days],
        } for c in v.components],
        "incidents": [{
            "id": s.key, "title": s.title, "resolved": s.resolved,
            "in_progress": s in v.active, "components": list(s.components),
            "url": f"{base}/incidents/{s.key}",
            "updates": [{"kind": u.kind, "label": u.label, "at": u.iso, "text": u.text}
                        for u in s.updates],
        } for s in stories],
        "maintenance": [{
            "components": list(m.components), "starts_at": iso(m.start),
            "ends_at": None if m.end is None else iso(m.end), "in_progress": m.active,
            "text": m.text,
        } for m in v.maintenance],
    }


async def status_json(request: web.Request) -> web.Response:
    site, root = _resolve(request)
    body = site.cached(f"json{root}", lambda: json.dumps(status_document(site, site.view(), root),
                                                         separators=(",", ":")).encode())
    assert isinstance(body, bytes)
    return pages.respond(body, content_type="application/json", cache=PAGE_CACHE,
                         extra={"Access-Control-Allow-Origin": "*"})


async def feed(request: web.Request) -> web.Response:
    site, root = _resolve(request)
    v = site.view()
    updates = sorted(((s, u) for s in (*v.active, *v.history) for u in s.updates),
                     key=lambda su: -su[1].at)[:50]
    entries = [{"key": s.key, "id": u.id, "title": f"{u.label}: {s.title}", "iso": u.iso,
                "text": u.text} for s, u in updates]
    updated = entries[0]["iso"] if entries else iso(v.generated_at)
    body = pages.render("feed.atom", base=site.public_url + root, entries=entries, updated=updated,
                        site_title=site.status.title)
    return pages.respond(body, content_type="application/atom+xml", cache=PAGE_CACHE)


def _text_width(text: str) -> int:
    # Verdana 11px averages about 6.8 px a character; padding 10 px each side.
    return int(len(text) * 6.8) + 20


async def badge(request: web.Request) -> web.Response:
    site, root = _resolve(request)
    slug = request.match_info["slug"]
    comp = site.view().component(slug)
    if comp is None:
        return web.Response(status=404, text="no such component")
    body = site.cached(f"badge:{root}:{slug}", lambda: pages.render(
        "badge.svg", left=comp.name, right=comp.label.lower(), w1=_text_width(comp.name),
        w2=_text_width(comp.label), colour=BADGE_COLOURS[comp.state]).encode())
    assert isinstance(body, bytes)
    return pages.respond(body, content_type="image/svg+xml", cache="no-cache, max-age=0")


async def logo(request: web.Request) -> web.Response:
    site, _root = _resolve(request)
    if site.logo is None or site.status.logo is None:
        return web.Response(status=404, text="no logo configured")
    kind = LOGO_TYPES[site.status.logo.suffix.lower()]
    return pages.respond(site.logo, content_type=kind, cache="public, max-age=86400")


# -- each tenant's page ------------------------------------------------------------


def tenant_sites(config: Config, engine: Engine, store: StatusStore, link_key: bytes,
          clock: Callable[[], float], subscriptions: Subscriptions, rollup: Rollup
          ) -> dict[str, Site]:
    """One site per tenant with status components; their publishers hooked to the engine."""
    out: dict[str, Site] = {}
    for name, tenant in config.tenants.items():
        if not tenant.status.components:
            continue
        publisher = Publisher(config, store, link_key, clock)
        publisher.status = tenant.status
        site = Site(config, engine, store, publisher, subscriptions, rollup, clock)
        site.status, site.tz, site.host, site.tenant = tenant.status, tenant.tz, tenant.host, name
        site.root = f"/status/{name}"
        site.logo = None
        if tenant.status.logo is not None:
            with contextlib.suppress(OSError):  # validated at load; gone since: no logo
                site.logo = tenant.status.logo.read_bytes()
        engine.hooks.append(publisher.on_incident)
        out[name] = site
    return out


def site_for(request: web.Request, provider: Site) -> tuple[Site, str] | None:
    """The site a request is for and the prefix of its links: a tenant's by path (prefix
    /status/<name>) or by Host header (prefix ""), else the provider's; None for a path
    naming no tenant with a page."""
    name = request.match_info.get("tenant")
    if name is not None:
        found = provider.tenant_sites.get(name)
        return (found, f"/status/{name}") if found is not None else None
    given = (request.host or "").lower()
    hp = split_host_port(given)
    host = hp[0] if hp is not None else given
    for site in provider.tenant_sites.values():
        if site.host is not None and site.host == host:
            return site, ""
    return provider, ""
