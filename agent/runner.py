"""The thin shell around the pure core: results in, persisted decisions out.

`Runner.on_result` is called by the scheduler for every probe run. It
records metrics, feeds outage detection, and when detection emits a signal
it asks the incident state machine what to do and hands the transition to
the engine, which persists it with its escalation plan and outbox messages
before anything is sent.

On start, `restore()` rebuilds in-memory state from the store: a check whose
incident was open is known to be down, so its recovery resolves that
incident instead of a new one being opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from agent import incidents
from agent.config import CheckConfig, Config
from agent.detect import degraded, flapping, observations
from agent.detect.degraded import DegradedState
from agent.detect.flapping import FlapState
from agent.detect.maintenance import active_window
from agent.detect.observations import ObsState
from agent.detect.outage import Health, OutageState, Signal, observe, restored_down
from agent.engine import Engine
from agent.metrics import CheckMetrics, Metrics
from checks.registry import KINDS
from checks.result import CheckResult

log = structlog.get_logger(__name__)


class Runner:
    def __init__(self, config: Config, engine: Engine, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self.clock = clock
        self.started_at = clock()
        self._states: dict[str, OutageState] = {c.name: OutageState() for c in config.checks}
        self._cm: dict[str, CheckMetrics] = {c.name: metrics.for_check(c.name)
                                             for c in config.checks}
        self._flaps: dict[str, FlapState] = {c.name: FlapState() for c in config.checks}
        self._obs: dict[str, ObsState] = {c.name: ObsState() for c in config.checks}
        #: Baselines per check and signal ("response time", observation keys), learned in
        #: memory (a restart learns again), and the signals degraded right now.
        self._baselines: dict[str, dict[str, DegradedState]] = {c.name: {} for c in config.checks}
        self._degraded_now: dict[str, set[str]] = {c.name: set() for c in config.checks}
        #: Checks that went down while suppressed (maintenance, a parent down): their
        #: incident opens, and pages once, when the suppression ends and they are still down.
        self._pending: dict[str, str] = {}

    def restore(self) -> None:
        """Checks whose incident is open are known to be down; orphaned incidents are closed."""
        self.engine.restore()
        for inc in self.engine.store.open_incidents():
            if inc.check is None:
                continue
            if self.config.check(inc.check) is None:
                # The check was removed from the config: nothing will ever resolve it.
                self.engine.resolve(inc.id, by="onwatch", cause="check removed",
                                    fix=f"check {inc.check} is no longer in the configuration")
                continue
            self._states[inc.check] = restored_down(inc.started_at)
            self.metrics.check_up.labels(inc.check).set(0)

    def on_result(self, check: CheckConfig, result: CheckResult, lateness: float) -> bool:
        """The scheduler's result handler; returns True to re-check quickly."""
        self.metrics.lateness.observe(lateness)
        self._cm[check.name].record(result)
        before = self._states[check.name]
        step = observe(before, check.name, result, confirm=check.confirm,
                       recover=check.recover, now=result.checked_at or self.clock())
        if step.state is not before:
            self._states[check.name] = step.state
            if step.state.health is not before.health:
                self.metrics.check_up.labels(check.name).set(
                    1 if step.state.health is Health.UP else 0)
        if not result.ok and step.recheck:
            log.info("check_failed_rechecking", check=check.name, reason=result.reason,
                     error_kind=str(result.error_kind), failures=step.state.fails)
        if result.observations:
            for sig in observations.observe(self._obs[check.name], result.observations,
                                            observations.Rules()):
                self._observed(check, sig)
        if result.ok:
            self._learn(check, result)
        flap = flapping.observe(self._flaps[check.name], step.state.health is Health.DOWN)
        self._flaps[check.name] = flap.state
        if flap.started or flap.stopped:
            self._flapping(check, flap, step.state)
        elif step.signal is not None and flap.state.flapping:
            log.info("flapping_change_not_paged", check=check.name,
                     health=step.signal.kind.value, reason=step.signal.reason)
        elif step.signal is not None:
            self._on_signal(check, step.signal)
        elif check.name in self._pending and step.state.health is Health.DOWN:
            self._release(check, step.state)
        return step.recheck

    def _learn(self, check: CheckConfig, result: CheckResult) -> None:
        """Feed the baselines: response time, and the observations the check names."""
        samples: list[tuple[str, float, str]] = []
        if check.baseline:
            samples.append(("response time", result.latency_s, "s"))
        for key in check.baseline_observations:
            value = result.observations.get(key)
            if value is not None:
                samples.append((key, value, ""))
        states = self._baselines[check.name]
        for signal, value, unit in samples:
            st = states.get(signal)
            if st is None:
                st = states[signal] = DegradedState()
            change = degraded.observe(st, result.checked_at, value, unit=unit)
            if change is not None:
                self._degraded(check, signal, change)

    def _degraded(self, check: CheckConfig, signal: str, change: degraded.Change) -> None:
        """One "degraded" incident per check, open while any of its signals is degraded."""
        engine, now = self.engine, self.clock()
        current = engine.open_for_check(check.name, "degraded")
        now_degraded = self._degraded_now[check.name]
        reason = f"{signal}: {change.reason}"
        tr: incidents.Transition | None = None
        if change.kind == "degraded":
            now_degraded.add(signal)
            if current is None:
                tr = incidents.observed("degraded", check.name, severity="low", reason=reason,
                                        now=now, new_id=engine.store.next_incident_id())
                tr = replace(tr, incident=replace(
                    tr.incident, policy=engine.policy_name_for(check, "low")))
            else:
                engine.note(current.id, by="onwatch", text=f"also degraded: {reason}")
        else:
            now_degraded.discard(signal)
            if current is not None and not now_degraded:
                tr = incidents.resolve(current, now=now, actor="onwatch", note=reason)
        if tr is not None:
            inc = engine.apply(tr)
            log.warning(f"degraded_{change.kind}", check=check.name, incident=inc.id,
                        reason=reason)

    def _observed(self, check: CheckConfig, sig: observations.ObsSignal) -> None:
        """Changes and trends: open, raise, note or resolve the incident of that kind."""
        engine, now = self.engine, self.clock()
        kind = {"renewed": "expiring", "fill_ok": "filling"}.get(sig.kind, sig.kind)
        current = engine.open_for_check(check.name, kind)
        tr: incidents.Transition | None = None
        if sig.kind in ("renewed", "fill_ok"):
            if current is not None:
                tr = incidents.resolve(current, now=now, actor="onwatch", note=sig.reason)
        elif current is None:
            tr = incidents.observed(kind, check.name, severity=sig.severity, reason=sig.reason,
                                    now=now, new_id=engine.store.next_incident_id())
            tr = replace(tr, incident=replace(
                tr.incident, policy=engine.policy_name_for(check, sig.severity)))
        elif sig.kind == "changed":
            engine.note(current.id, by="onwatch", text=f"changed again: {sig.reason}")
        elif current.severity != sig.severity:
            tr = incidents.change_severity(current, severity=sig.severity, reason=sig.reason,
                                           now=now)
        if tr is not None:
            inc = engine.apply(tr)
            log.warning(f"observation_{sig.kind}", check=check.name, incident=inc.id,
                        key=sig.key, reason=sig.reason)

    def _flapping(self, check: CheckConfig, flap: flapping.FlapStep, state: OutageState
                  ) -> None:
        engine, now = self.engine, self.clock()
        current = engine.open_for_check(check.name)
        if flap.started:
            detail = f"{flap.change:.0%} state change over its last {flapping.RUNS} runs"
            tr: incidents.Transition | None = incidents.flapping_started(
                current, check.name, severity=check.severity, detail=detail, now=now,
                new_id=engine.store.next_incident_id())
            if tr is not None and tr.notify == "opened":
                tr = replace(tr, incident=replace(
                    tr.incident, policy=engine.policy_name_for(check, check.severity)))
        elif current is not None:
            tr = incidents.flapping_stopped(current, up=state.health is not Health.DOWN, now=now)
        else:
            tr = None  # settled with nothing open (resolved by hand meanwhile)
        if tr is not None:
            inc = engine.apply(tr)
            log.warning("flapping_started" if flap.started else "flapping_stopped",
                        check=check.name, incident=inc.id, change=round(flap.change, 3))

    def health(self, name: str) -> Health:
        return self._states[name].health

    def suppression(self, check: CheckConfig, now: float) -> str | None:
        """Why an outage of `check` must not page now, or None."""
        windows = (*self.config.maintenance, *self.engine.runtime_windows(now))
        w = active_window(windows, check.name, check.tags, now)
        if w is not None:
            return "in a maintenance window" + (f" ({w.reason})" if w.reason else "")
        for parent in check.depends_on:
            st = self._states[parent]
            if st.health is Health.DOWN:
                inc = self.engine.open_for_check(parent)
                return (f"depends on {parent}, which is down"
                        + (f" (incident #{inc.id})" if inc else ""))
            if st.fails > 0:
                # Both broke at once and the child confirmed first: wait for the parent.
                return f"depends on {parent}, which is failing too"
        return None

    def _release(self, check: CheckConfig, state: OutageState) -> None:
        """A suppressed outage outlived its suppression: open its incident now, once."""
        if self.suppression(check, self.clock()) is not None:
            return
        del self._pending[check.name]
        if self.engine.open_for_check(check.name) is None:
            self._on_signal(check, Signal(Health.DOWN, check.name, self.clock(), state.since,
                                          "still down after the suppression ended", None))

    def _on_signal(self, check: CheckConfig, signal: Signal) -> None:
        engine = self.engine
        if signal.kind is Health.UP:
            self._pending.pop(check.name, None)
        elif engine.open_for_check(check.name) is None:
            why = self.suppression(check, self.clock())
            if why is not None:
                self._suppress(check, signal, why)
                return
        current = engine.open_for_check(check.name)
        if current is None and signal.kind is Health.DOWN:
            current = engine.store.latest_incident(check.name)  # may be reopened
        policy_name = engine.policy_name_for(check, check.severity)
        window = engine.config.escalation.policies[policy_name].reopen_window \
            if policy_name in engine.config.escalation.policies else 0.0
        tr = incidents.on_signal(current, signal, severity=check.severity,
                                 target=KINDS[check.type].target(check.spec), now=self.clock(),
                                 new_id=engine.store.next_incident_id(), reopen_window=window)
        if tr is None:
            return
        if tr.notify == "opened":
            tr = replace(tr, incident=replace(tr.incident, policy=policy_name))
        inc = engine.apply(tr)
        log.warning(f"incident_{tr.notify}", incident=inc.id, check=check.name,
                    reason=inc.reason, severity=inc.severity)

    def _suppress(self, check: CheckConfig, signal: Signal, why: str) -> None:
        self._pending[check.name] = why
        log.warning("outage_suppressed", check=check.name, reason=signal.reason, why=why)
        for parent in check.depends_on:
            inc = self.engine.open_for_check(parent)
            if inc is not None:  # the child's outage becomes part of the parent's story
                self.engine.note(inc.id, by="onwatch",
                                 text=f"{check.name} is down too ({signal.reason}); it depends "
                                      f"on {parent}, so it is not paged separately")
