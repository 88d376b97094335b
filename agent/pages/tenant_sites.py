"""Each tenant's own status page: its components only, at /status/<name> and on its host.

Contract: a tenant's page is a `Site` (pages/site.py) of its own, with the
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
from collections.abc import Callable

from aiohttp import web

from agent.config import Config
from agent.engine import Engine
from agent.fields import split_host_port
from agent.pages.site import Site
from agent.status.notices import Publisher
from agent.status.subscriptions import Subscriptions
from agent.status.uptime import Rollup
from agent.store.status import StatusStore


def build(config: Config, engine: Engine, store: StatusStore, link_key: bytes,
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
