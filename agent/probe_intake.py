"""The central's side of remote probes: their checks out, their results in, their silence.

Routes (on the public listener when there is one, and on the private one):
- `GET /probe/v1/checks`: the check tables whose `locations` name the probe, without
  the keys only the central uses (contacts, policy, ...); `${ENV}` references and
  `*_file` paths in them are resolved on the probe's own machine.
- `POST /probe/v1/results`: a signed batch (agent/probe_wire.py). A batch at or
  below the last accepted sequence number is a replay or a retry: answered
  `duplicate`, nothing applied. Results of checks the probe does not run are
  counted and ignored. Each result is fresh or late (`[probes] late_after`,
  default 2 intervals): late ones are history (agent/locations.py).

Every request is refused with 401 unless signed with the probe's current key
(an unknown, revoked or replaced key, a bad signature, a timestamp more than
five minutes off). The answers say why, without telling which of those it was.

`run()` watches for silence: a probe that sent nothing for `[probes]
unreachable_after` becomes one "location unreachable" incident (an alert keyed
`probe:<name>`, through the engine like every incident), naming the checks
that only it runs; its views stop counting toward any check's quorum. Its next
batch resolves that incident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from agent import probe_wire
from agent.config import CheckConfig, Config
from agent.config_probe import CENTRAL_KEYS, LOCAL
from agent.fields import format_duration
from agent.intake import AlertEvent
from agent.runner import Runner
from agent.store.probes import ProbeStore
from checks.result import CheckResult

log = structlog.get_logger(__name__)

WATCH_EVERY = 1.0
SOURCE = "probes"


class ProbeHub:
    def __init__(self, config: Config, runner: Runner, secret: bytes, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.runner = runner
        self.probes = ProbeStore(runner.engine.store)
        self._secret = secret
        self._clock = clock
        started = clock()
        #: Location -> when its last batch arrived (agent start for none yet).
        self.last_seen: dict[str, float] = {loc: started for loc in self._remote_locations()}
        self.unreachable: set[str] = {
            inc.key.removeprefix("probe:") for inc in runner.engine.store.open_incidents()
            if inc.key and inc.key.startswith("probe:")}
        self.batches = Counter("onwatch_probe_batches_total", "Result batches from remote "
                               "probes, by outcome", ["probe", "outcome"], registry=registry)
        self.results = Counter("onwatch_probe_results_total", "Results from remote probes, "
                               "by outcome (fresh, late, ignored)", ["probe", "outcome"],
                               registry=registry)
        self.refused = Counter("onwatch_probe_refused_total", "Probe requests refused (bad or "
                               "missing signature, revoked key, replay)", registry=registry)
        self.last_report = Gauge("onwatch_probe_last_report_timestamp_seconds",
                                 "When each remote probe's last batch arrived", ["probe"],
                                 registry=registry)
        for loc in self.last_seen:
            if self.probes.get(loc) is None:
                log.warning("probe_not_added", location=loc,
                            hint=f"checks run at {loc!r}, which has no key: run `onwatch probe "
                                 f"add {loc}` and give the key to that probe")

    def _remote_locations(self) -> set[str]:
        return {loc for c in self.config.checks for loc in c.locations if loc != LOCAL}

    def reconfigure(self, config: Config) -> None:
        self.config = config
        now = self._clock()
        for loc in self._remote_locations():
            self.last_seen.setdefault(loc, now)

    def checks_for(self, probe: str) -> list[CheckConfig]:
        return [c for c in self.config.checks if probe in c.locations]

    # -- requests --------------------------------------------------------------

    def claimed(self, request: web.Request) -> tuple[str, int, int, str]:
        """Who the headers say signed the request, when that is a probe with that key
        now; HTTPUnauthorized otherwise (before a byte of the body is read)."""
        try:
            name, key_id, at, sig = probe_wire.signed_by(request.headers)
        except probe_wire.WireError as exc:
            raise self._refuse(str(exc)) from None
        row = self.probes.get(name)
        if row is None or not row.active or row.key_id != key_id:
            raise self._refuse("unknown or revoked probe key")
        return name, key_id, at, sig

    def authenticate(self, request: web.Request, body: bytes,
                     claim: tuple[str, int, int, str] | None = None) -> str:
        """The probe that signed this request; HTTPUnauthorized otherwise."""
        name, key_id, at, sig = claim or self.claimed(request)
        key = probe_wire.derive_key(self._secret, name, key_id)
        if not probe_wire.verify(key, request.method, request.path, at, body, sig):
            raise self._refuse("bad signature")
        if abs(time.time() - at) > probe_wire.MAX_SKEW_S:
            raise self._refuse("the request's time is more than 5 minutes from the central's "
                               "(a replay, or the probe's clock is wrong)")
        return name

    def _refuse(self, why: str) -> web.HTTPUnauthorized:
        self.refused.inc()
        log.warning("probe_request_refused", why=why)
        return web.HTTPUnauthorized(text=f'{{"error": "{why}"}}', content_type="application/json")

    def table_for(self, check: CheckConfig) -> dict[str, Any]:
        """The table a probe runs the check from: its own keys, with the timings resolved
        here (they may come from the central's [defaults])."""
        table = {k: v for k, v in check.table.items() if k not in CENTRAL_KEYS}
        table.update(interval=format_duration(check.interval),
                     timeout=format_duration(check.timeout), confirm=check.confirm,
                     recover=check.recover,
                     recheck_interval=format_duration(check.recheck_interval))
        return table

    def accept(self, probe: str, batch: probe_wire.Batch) -> dict[str, Any]:
        """Apply one authenticated batch; what to answer."""
        now = self._clock()
        if not self.probes.accept(probe, batch.seq, time.time()):
            self.batches.labels(probe, "duplicate").inc()
            return {"accepted": 0, "duplicate": True}
        self.batches.labels(probe, "accepted").inc()
        self.last_seen[probe] = now
        self.last_report.labels(probe).set(time.time())
        by_check: dict[str, list[tuple[CheckResult, bool]]] = {}
        ignored = 0
        wall = time.time()
        for name, result in batch.results:
            if result.checked_at > wall:  # a probe whose clock runs ahead: not the future
                result = replace(result, checked_at=wall)
            check = self.config.check(name)
            if check is None or probe not in check.locations:
                ignored += 1
                continue
            late_after = self.config.probes.late_after or 2 * check.interval
            fresh = wall - result.checked_at <= late_after
            by_check.setdefault(name, []).append((result, fresh))
        counts = {"fresh": 0, "late": 0}
        for name, items in by_check.items():
            items.sort(key=lambda item: item[0].checked_at)
            for _, fresh in items:
                counts["fresh" if fresh else "late"] += 1
            check = self.config.check(name)
            if check is not None:
                self.runner.on_remote(check, probe, items)
        for outcome, n in (*counts.items(), ("ignored", ignored)):
            if n:
                self.results.labels(probe, outcome).inc(n)
        if probe in self.unreachable:
            self._back(probe)
        return {"accepted": sum(counts.values()), "late": counts["late"], "ignored": ignored}

    # -- silence ---------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            self.watch()

    def watch(self) -> None:
        now = self._clock()
        if not self.runner.engine.leading:
            # A standby takes no results (they go to the leader) and opens nothing: on
            # taking over, every probe gets a whole unreachable_after to find it.
            for loc in self._remote_locations():
                self.last_seen[loc] = now
            return
        after = self.config.probes.unreachable_after
        for loc in sorted(self._remote_locations()):
            seen = self.last_seen.setdefault(loc, now)
            if loc not in self.unreachable and now - seen > after:
                self._lost(loc, now - seen)

    def _lost(self, loc: str, silent: float) -> None:
        self.unreachable.add(loc)
        alone = self.runner.location_lost(loc)
        shared = [c.name for c in self.checks_for(loc) if c.name not in alone]
        reason = (f"probe {loc} has sent nothing for {format_duration(silent)}: its line to "
                  "this agent, its host or the probe itself is down")
        if alone:
            reason += (f"; checks that only it runs are not being watched: {', '.join(alone)} "
                       "(not paged one by one)")
        if shared:
            reason += f"; checks it shares with other locations count without it: " \
                      f"{', '.join(shared)}"
        log.warning("location_unreachable", location=loc, silent_s=round(silent, 1),
                    only_here=alone)
        self._alert(loc, firing=True, reason=reason)

    def _back(self, loc: str) -> None:
        self.unreachable.discard(loc)
        log.warning("location_reachable", location=loc)
        self._alert(loc, firing=False, reason=f"probe {loc} reports again")

    def _alert(self, loc: str, *, firing: bool, reason: str) -> None:
        cfg = self.config.probes
        wall = time.time()
        ev = AlertEvent(key=f"probe:{loc}", source=SOURCE, firing=firing,
                        title=f"location {loc} unreachable", reason=reason,
                        severity=cfg.severity, policy=cfg.policy or self.config.default_policy,
                        labels={"location": loc}, starts_at=wall, ends_at=None if firing else wall,
                        episode_known=False)
        self.runner.engine.on_alert(ev)


# -- aiohttp handlers ------------------------------------------------------------

HUB_KEY = web.AppKey("probe_hub", ProbeHub)


def mount(app: web.Application, hub: ProbeHub) -> None:
    app[HUB_KEY] = hub
    app.router.add_get("/probe/v1/checks", checks_handler)
    app.router.add_post("/probe/v1/results", results_handler)


async def _body(request: web.Request) -> bytes:
    if (request.content_length or 0) > probe_wire.MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(probe_wire.MAX_BODY, request.content_length or 0)
    # read(n) returns what has arrived, up to n: a big batch comes in several chunks.
    data = bytearray()
    while len(data) <= probe_wire.MAX_BODY:
        chunk = await request.content.read(probe_wire.MAX_BODY + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > probe_wire.MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(probe_wire.MAX_BODY, len(data))
    return bytes(data)


async def checks_handler(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    probe = hub.authenticate(request, b"")
    checks = [hub.table_for(c) for c in hub.checks_for(probe)]
    return web.json_response({"probe": probe, "checks": checks})


async def results_handler(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    claim = hub.claimed(request)  # an unknown sender's body is never read
    if not hub.runner.engine.leading:
        # Only the leader acts on results (agent/leader.py); the probe tries the next URL.
        hub.batches.labels(claim[0], "standby").inc()
        return web.json_response({"error": "this onwatch instance stands by: send results to "
                                           "the leader (list every instance in the probe's "
                                           "central)"}, status=503)
    body = await _body(request)
    probe = hub.authenticate(request, body, claim)
    try:
        batch = probe_wire.decode_batch(body)
    except probe_wire.WireError as exc:
        hub.batches.labels(probe, "malformed").inc()
        return web.json_response({"error": str(exc)}, status=400)
    if batch.probe != probe:
        hub.batches.labels(probe, "malformed").inc()
        return web.json_response({"error": "the batch names another probe"}, status=400)
    try:
        answer = hub.accept(probe, batch)
    except hub.runner.engine.store.errors as exc:
        log.error("probe_batch_not_stored", probe=probe, error=str(exc))
        return web.json_response({"error": "the central cannot store this now; send it again "
                                           "later"}, status=503)
    return web.json_response(answer)
