"""Checks seen from several locations: per-location results in, one verdict to the engine.

The runner hands every result of a check with `locations` (agent/config_probe.py)
here -- its own runs as location "local", remote probes' results through
agent/probe_intake.py. Each location's outage is confirmed on its own
(agent/detect/quorum.py); the check's incident opens when `quorum` of them
agree and resolves when fewer than `quorum` do. The first location in the
list also feeds the check's baselines and observation rules through the usual
pipeline (one location's response time is a meaningful baseline; a mix of
several is not), but its own outage signals are not passed on.

Late results (taken more than `late_after` before they arrived: a probe
sending what it buffered while the central was unreachable) are history: they
bring the location's view up to date but page nothing themselves, and a
verdict is only taken when the newest result of a batch is fresh, so an outage
that is already over when it is reported opens nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress

import structlog
from prometheus_client import CollectorRegistry, Gauge

from agent.config import CheckConfig
from agent.detect import pipeline, quorum
from agent.detect.outage import Health, Signal
from agent.detect.pipeline import CheckState, Degraded, Held, Observed, OutageChange, Params
from checks.result import CheckResult

log = structlog.get_logger(__name__)

#: (check, signal) to the engine.
Deliver = Callable[[CheckConfig, pipeline.CheckSignal], object]
#: Why an outage of the check must not page now (maintenance, a parent down), or None.
HoldFor = Callable[[CheckConfig], str | None]
_HEALTH_VALUE = {Health.UP: 1.0, Health.DOWN: 0.0}


class Locations:
    def __init__(self, registry: CollectorRegistry, deliver: Deliver, hold_for: HoldFor,
                 on_health: Callable[[str, Health], None]) -> None:
        self._votes: dict[str, quorum.Vote] = {}
        self._deliver = deliver
        self._hold_for = hold_for
        self._on_health = on_health
        self.location_up = Gauge(
            "onwatch_check_location_up", "1 when this location confirms the check up, 0 when "
            "down, absent while it has no word (checks with locations)", ["check", "location"],
            registry=registry)

    def vote(self, name: str) -> quorum.Vote:
        v = self._votes.get(name)
        if v is None:
            v = self._votes[name] = quorum.Vote()
        return v

    def health(self, name: str) -> Health:
        v = self._votes.get(name)
        if v is None:
            return Health.UNKNOWN
        return Health.DOWN if v.down else (Health.UP if v.seen else Health.UNKNOWN)

    def restore(self, name: str, since: float) -> None:
        self._votes[name] = quorum.restored(since)

    def forget_check(self, name: str) -> None:
        v = self._votes.pop(name, None)
        for loc in (v.seen if v else ()):
            with suppress(KeyError):
                self.location_up.remove(name, loc)

    def reset(self, name: str) -> None:
        """Resolved by hand while still failing somewhere: every view starts over."""
        self._votes[name] = quorum.Vote()

    def result(self, check: CheckConfig, location: str, result: CheckResult, st: CheckState,
               params: Params, *, fresh: bool) -> bool:
        """One result from one location; returns True to re-check soon (local only)."""
        v = self.vote(check.name)
        before = quorum.health_at(v, location)
        recheck = quorum.observe(v, location, check.name, result, confirm=check.confirm,
                                 recover=check.recover, now=result.checked_at)
        after = quorum.health_at(v, location)
        if after is not before:
            self.location_up.labels(check.name, location).set(_HEALTH_VALUE.get(after, 0.0))
            log.info("check_location_health", check=check.name, location=location,
                     health=str(after), reason=result.reason, fresh=fresh)
        if location == check.locations[0]:
            step = pipeline.step(st, check.name, result, params, now=result.checked_at,
                                 hold=None)
            if fresh:
                for signal in step.signals:
                    if isinstance(signal, Observed | Degraded):
                        self._deliver(check, signal)
        if fresh:
            self.settle(check, result.checked_at)
        return recheck and location == check.locations[0]

    def settle(self, check: CheckConfig, now: float) -> None:
        """Take the verdict: does the check's own health change with what is seen now?"""
        v = self.vote(check.name)
        signal = quorum.verdict(v, check.name, check.locations, check.quorum, now=now)
        if signal is not None:
            self._on_health(check.name, signal.kind)
            if signal.kind is Health.DOWN:
                why = self._hold_for(check)
                if why is not None:
                    v.held = why
                    self._deliver(check, Held(signal, why))
                    return
            self._deliver(check, OutageChange(signal))
        elif v.down and v.held is not None and self._hold_for(check) is None:
            v.held = None
            self._deliver(check, OutageChange(Signal(
                Health.DOWN, check.name, now, v.since,
                "still down after the suppression ended; "
                + quorum.describe(v, check.locations, check.quorum), None)))

    def lost(self, location: str, checks: Iterable[CheckConfig]) -> list[str]:
        """`location` stopped reporting: forget its views; returns the checks that ran only
        there (nothing sees them now)."""
        alone = []
        for check in checks:
            if location not in check.locations:
                continue
            quorum.forget(self.vote(check.name), location)
            with suppress(KeyError):
                self.location_up.remove(check.name, location)
            if check.locations == (location,):
                alone.append(check.name)
        return alone

    def views(self, check: CheckConfig) -> list[tuple[str, Health, str]]:
        """(location, its confirmed health, its last reason) per location of `check`."""
        v = self.vote(check.name)
        out = []
        for loc in check.locations:
            seen = v.seen.get(loc)
            out.append((loc, quorum.health_at(v, loc), seen.reason if seen else ""))
        return out
