"""The thin shell around detection: results in, signals to the engine.

`Runner.on_result` is the scheduler's result handler. For each probe run it
records metrics, reads the clock, works out whether a confirmed outage of
this check must be held back (a maintenance window, a parent that is down),
feeds the pure detection pipeline (`agent.detect.pipeline`) with the check's
one `CheckState`, and hands every signal the pipeline returns to the engine,
which alone decides what happens to incidents. It owns no policy.

On start, `restore()` rebuilds detection state from the store: a check
whose *outage* incident was open is known to be down, so that its recovery
resolves that incident instead of a new one opening. Other kinds of
incident (an expiring certificate, a degraded baseline) say nothing about
whether the check is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from agent.config import CheckConfig, Config
from agent.config_probe import LOCAL
from agent.detect import pipeline
from agent.detect.maintenance import active_window
from agent.detect.outage import Health, OutageState, Signal
from agent.detect.pipeline import CheckState, Params
from agent.engine import Engine
from agent.incidents import Incident
from agent.locations import Locations
from agent.metrics import CheckMetrics, Metrics
from checks.result import CheckResult

log = structlog.get_logger(__name__)


def params_for(check: CheckConfig) -> Params:
    return Params(confirm=check.confirm, recover=check.recover, baseline=check.baseline,
                  baseline_observations=tuple(check.baseline_observations))


class Runner:
    def __init__(self, config: Config, engine: Engine, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self.clock = clock
        self.started_at = clock()
        self._states: dict[str, CheckState] = {c.name: CheckState() for c in config.checks}
        #: Detection parameters per check, rebuilt when a different config object arrives.
        self._params: dict[str, tuple[CheckConfig, Params]] = {
            c.name: (c, params_for(c)) for c in config.checks}
        self._cm: dict[str, CheckMetrics] = {c.name: metrics.for_check(c.name)
                                             for c in config.checks}
        #: Checks known to be down, kept as health changes (/healthz reads it at any size).
        self._down: set[str] = set()
        engine.on_resolved_by_hand = self.forget_outage
        #: Checks seen from several locations (agent/locations.py).
        self.locations = Locations(metrics.registry, engine.on_check_signal, self._hold,
                                   self._set_up)

    def restore(self) -> None:
        """Checks whose outage incident is open are known to be down; orphans are closed."""
        self.engine.restore()
        for inc in self._close_orphans():
            if inc.kind.marks_down:
                check = self.config.check(inc.check or "")
                if check is not None and check.remote:
                    self.locations.restore(check.name, inc.started_at)
                else:
                    self._states[inc.check or ""] = pipeline.restored(inc.started_at)
                self._set_up(inc.check or "", Health.DOWN)

    def _close_orphans(self) -> list[Incident]:
        """Resolve open incidents of checks no longer configured; the others, of checks."""
        kept = []
        for inc in self.engine.store.open_incidents():
            if inc.check is None:
                continue
            if self.config.check(inc.check) is None:
                # The check was removed from the config: nothing will ever resolve it.
                self.engine.resolve(inc.id, by="onwatch", cause="check removed",
                                    fix=f"check {inc.check} is no longer in the configuration")
                continue
            kept.append(inc)
        return kept

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: added checks start with fresh state, removed ones are
        forgotten (their open incidents resolved), all others keep theirs (their
        detection parameters follow the new CheckConfig, see `_params_of`)."""
        names = {c.name for c in config.checks}
        self.config = config
        for name in [n for n in self._states if n not in names]:
            del self._states[name], self._cm[name]
            self._params.pop(name, None)
            self.locations.forget_check(name)
            self.metrics.checks.remove(name)
            self._down.discard(name)
        for c in config.checks:
            if c.name not in self._states:
                self._states[c.name] = CheckState()
                self._cm[c.name] = self.metrics.for_check(c.name)
        self._close_orphans()

    def on_result(self, check: CheckConfig, result: CheckResult, lateness: float) -> bool:
        """The scheduler's result handler; returns True to re-check quickly."""
        if check.name not in self._states:
            return False  # removed by a reload while its probe was in flight
        self.metrics.lateness.observe(lateness)
        self._cm[check.name].record(result)
        st = self._states[check.name]
        if check.remote:
            return self.locations.result(check, LOCAL, result, st, self._params_of(check),
                                         fresh=True)
        hold = self._hold(check) if pipeline.wants_hold(st, result) else None
        step = pipeline.step(st, check.name, result, self._params_of(check),
                             now=result.checked_at or self.clock(), hold=hold)
        if step.health_changed:
            self._set_up(check.name, st.outage.health)
        if not result.ok and step.recheck:
            log.info("check_failed_rechecking", check=check.name, reason=result.reason,
                     error_kind=str(result.error_kind), failures=st.outage.fails)
        if step.muted is not None:
            log.info("flapping_change_not_paged", check=check.name,
                     health=step.muted.kind.value, reason=step.muted.reason)
        for signal in step.signals:
            self.engine.on_check_signal(check, signal)
        return step.recheck

    def on_remote(self, check: CheckConfig, location: str,
                  results: list[tuple[CheckResult, bool]]) -> None:
        """Results of `check` from a remote probe, oldest first, each with whether it is
        fresh (agent/probe_intake.py decides); the verdict follows the newest fresh one."""
        st = self._states.get(check.name)
        if st is None or location not in check.locations:
            return
        for result, fresh in results:
            self._cm[check.name].record(result)
            self.locations.result(check, location, result, st, self._params_of(check),
                                  fresh=fresh)

    def location_lost(self, location: str) -> list[str]:
        """A probe stopped reporting; returns the checks only it runs."""
        return self.locations.lost(location, self.config.checks)

    def _set_up(self, name: str, health: Health) -> None:
        """A check's health changed: onwatch_check_up and the down set follow."""
        cm = self._cm.get(name)
        if cm is not None:
            cm.set_up(health is Health.UP)
        if health is Health.DOWN:
            self._down.add(name)
        else:
            self._down.discard(name)

    def down_checks(self) -> list[str]:
        """The checks known to be down, by name."""
        return sorted(self._down)

    def forget_outage(self, inc: Incident) -> None:
        """A person resolved `inc` while its check may still fail: the check is unknown.

        Detection would otherwise stay "down" with nothing open, so the failing
        target would page nobody until it recovered and failed again. Unknown, its
        next confirmed failure opens a new incident within the usual confirm time;
        /healthz and `onwatch_check_up` (absent while unknown) say the same.
        """
        st = self._states.get(inc.check or "")
        if (st is None or inc.resolved_by == "onwatch" or not inc.kind.marks_down
                or self.health(inc.check or "") is Health.UP):
            return
        self.locations.reset(inc.check or "")
        st.outage, st.held = OutageState(), None
        cm = self._cm.get(inc.check or "")
        if cm is not None:
            cm.set_up(None)  # absent while unknown, as at start
        self._down.discard(inc.check or "")
        log.info("check_state_forgotten", check=inc.check, incident=inc.id,
                 why="resolved by hand while not known to be up")

    def catch_up(self) -> None:
        """On taking over from another instance (agent/leader.py): what this instance saw
        while it stood by and the store does not show -- the last leader died before it
        acted -- is acted on now: a check down with no incident opens one, an open outage
        of a check that is up resolves."""
        now = self.clock()
        for check in self.config.checks:
            inc, health = self.engine.open_for_check(check.name), self.health(check.name)
            if check.remote or check.name not in self._states:
                continue
            if health is Health.DOWN and inc is None and self.suppression(check, now) is None:
                since = self._states[check.name].outage.since
                sig = Signal(Health.DOWN, check.name, now, since, "down when this instance "
                             "took over (the last leader had not opened it)", None)
            elif health is Health.UP and inc is not None and inc.kind.marks_down:
                sig = Signal(Health.UP, check.name, now, inc.started_at, "up when this "
                             "instance took over", None)
            else:
                continue
            log.warning("takeover_catch_up", check=check.name, health=str(health))
            self.engine.on_check_signal(check, pipeline.OutageChange(sig))

    def _params_of(self, check: CheckConfig) -> Params:
        cached = self._params.get(check.name)
        if cached is None or cached[0] is not check:
            cached = self._params[check.name] = (check, params_for(check))
        return cached[1]

    def health(self, name: str) -> Health:
        check = self.config.check(name)
        if check is not None and check.remote:
            return self.locations.health(name)
        return self._states[name].outage.health

    def state(self, name: str) -> CheckState | None:
        """The check's detection state (agent/learning.py stores what it learned)."""
        return self._states.get(name)

    def _hold(self, check: CheckConfig) -> str | None:
        """Why a confirmed outage of `check` must not page now; None when it may (or is
        already open, so that nothing about it changes)."""
        if self.engine.open_for_check(check.name) is not None:
            return None
        return self.suppression(check, self.clock())

    def suppression(self, check: CheckConfig, now: float) -> str | None:
        """Why an outage of `check` must not page now, or None."""
        windows = (*self.config.maintenance, *self.engine.runtime_windows(now))
        w = active_window(windows, check.name, check.tags, now)
        if w is not None:
            return "in a maintenance window" + (f" ({w.reason})" if w.reason else "")
        for parent in check.depends_on:
            if self.health(parent) is Health.DOWN:
                inc = self.engine.open_for_check(parent)
                return (f"depends on {parent}, which is down"
                        + (f" (incident #{inc.id})" if inc else ""))
            if self._states[parent].outage.fails > 0:
                # Both broke at once and the child confirmed first: wait for the parent.
                return f"depends on {parent}, which is failing too"
        return None
