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
from agent.detect.outage import Health, OutageState, Signal, observe, restored_down
from agent.engine import Engine
from agent.metrics import CheckMetrics, Metrics
from checks import KINDS
from checks.base import CheckResult

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
        if step.signal is not None:
            self._on_signal(check, step.signal)
        return step.recheck

    def health(self, name: str) -> Health:
        return self._states[name].health

    def _on_signal(self, check: CheckConfig, signal: Signal) -> None:
        engine = self.engine
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
