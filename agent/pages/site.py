"""Everything the status page's routes need, and the short-lived cache in front of it.

A `Site` is made once by the daemon. `view()` computes the `StatusView`
(status/view.py) at most once per `ttl` seconds, and again at once when a
notice is published or the rollup written (their generation counters move),
so a burst of requests renders nothing twice, and a change is on the page
without waiting for the cache. `cached(key, make)` keeps rendered bodies
(the page, the JSON, a badge) under the same rule. The uptime bars, which
only change when the rollup is flushed (once a minute), are kept until then.

`status_loop` is the site's housekeeping task: flush the uptime rollup,
announce maintenance, every `[status] rollup_every` (a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent import tenancy
from agent.config import Config
from agent.detect.maintenance import MaintenanceWindow
from agent.engine import Engine
from agent.incidents import Incident
from agent.status import view as viewmod
from agent.status.notices import Publisher
from agent.status.subscriptions import CONFIRM_TTL, Subscriptions
from agent.status.uptime import Rollup
from agent.status.view import StatusView
from agent.store.status import StatusStore

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Entry:
    at: float
    generation: tuple[int, int]
    value: object


class Site:
    def __init__(self, config: Config, engine: Engine, store: StatusStore, publisher: Publisher,
                 subscriptions: Subscriptions, rollup: Rollup, clock: Callable[[], float],
                 *, ttl: float = 2.0) -> None:
        self.config = config
        self.status = config.status
        self.tz = config.agent.tz
        self.engine = engine
        self.store = store
        self.publisher = publisher
        self.subscriptions = subscriptions
        self.rollup = rollup
        self.clock = clock
        self.ttl = ttl
        self.logo: bytes | None = None
        if config.status.logo is not None:
            with contextlib.suppress(OSError):  # validated at load; gone since: no logo
                self.logo = config.status.logo.read_bytes()
        self.flushes = 0
        self._cache: dict[str, _Entry] = {}
        self._bars: tuple[int, str, viewmod.Bars] | None = None
        self._tags = {c.name: c.tags for c in config.checks}
        #: A tenant's page (pages/status_routes.py) answers on this Host header too.
        self.host: str | None = None
        self.tenant = ""
        #: Where its pages are under the public listener ("/status/<tenant>" for a tenant's).
        self.root = ""
        #: On the provider's site: each tenant's, by name (/status/<name>).
        self.tenant_sites: dict[str, Site] = {}

    @property
    def public_url(self) -> str:
        return self.publisher.public_url

    def _generation(self) -> tuple[int, int]:
        return (self.publisher.generation, self.flushes)

    def windows(self, now: float) -> tuple[MaintenanceWindow, ...]:
        return (*self.config.maintenance, *self.engine.runtime_windows(now))

    def cached(self, key: str, make: Callable[[], object]) -> object:
        now, gen = self.clock(), self._generation()
        hit = self._cache.get(key)
        if hit is not None and hit.generation == gen and 0 <= now - hit.at < self.ttl:
            return hit.value
        if len(self._cache) > 256:  # badge keys come from the URL: keep the dict bounded
            self._cache.clear()
        value = make()
        self._cache[key] = _Entry(now, gen, value)
        return value

    def view(self) -> StatusView:
        got = self.cached("view", self._build)
        assert isinstance(got, StatusView)
        return got

    def _build(self) -> StatusView:
        now = self.clock()
        days = viewmod.dates(self.status.history_days, self.tz, now)
        if self._bars is None or self._bars[0] != self.flushes or self._bars[1] != days[-1]:
            uptime = self.store.uptime(days[0])
            self._bars = (self.flushes, days[-1], viewmod.bars(self.status, uptime, days))
        incidents = self.engine.store.open_incidents()
        # The notices table holds every tenant's: show the ones naming our components only.
        slugs = {c.slug for c in self.status.components}
        notices = [n for n in self.store.notices(since=now - self.status.history_days * 86400.0)
                   if self._ours(n.components, slugs)]
        return viewmod.build(self.status, self.tz, incidents=incidents, notices=notices,
                             bars=self._bars[2], windows=self.windows(now), tags=self._tags,
                             now=now)

    def of(self, inc: Incident) -> Site:
        """The page an incident is told on: its tenant's (pages/status_routes.py), or this."""
        return self.tenant_sites.get(tenancy.of_incident(self.config, inc), self)

    def _ours(self, slugs: tuple[str, ...], mine: set[str]) -> bool:
        if mine.intersection(slugs):
            return True
        # The provider's page keeps notices of components since renamed; never a tenant's
        # (their slugs hold "--", which a slug made from a name never does).
        return not self.tenant and not any("--" in s for s in slugs)

    def housekeeping(self) -> None:
        now = self.clock()
        self.rollup.flush(now)
        with self.store.store.tx():
            self.store.prune(now)
            self.store.expire_pending(now - CONFIRM_TTL)
        for site in (self, *self.tenant_sites.values()):
            site.flushes += 1
            if site.publisher.announce(site.windows(now), now):
                log.info("maintenance_announced", tenant=site is not self)

    async def status_loop(self, stop: asyncio.Event) -> None:
        """Once a minute until `stop`: the rollup written, maintenance announced."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.status.rollup_every)
            if self.engine.leading:  # the leader's: a standby would announce twice
                self.housekeeping()
