"""The thin shell around the pure core: results in, persisted decisions out.

`Runner.on_result` is called by the scheduler for every probe run. It
records metrics, feeds outage detection, and when detection emits a signal
it asks the incident state machine what to do, then stores the incident,
its timeline entries and the notifications it owes in one transaction
before anything is sent (outbox before send). The dispatcher picks the
messages up from the store.

On start, `restore()` rebuilds in-memory state from the store: a check whose
incident was open is known to be down, so its recovery resolves that
incident instead of a new one being opened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import structlog

from agent import incidents
from agent.config import CheckConfig, Config
from agent.detect.outage import Health, OutageState, observe, restored_down
from agent.incidents import Incident, TimelineEntry
from agent.metrics import CheckMetrics, Metrics
from agent.store.sqlite import OutboxMessage, Store
from checks import KINDS
from checks.base import CheckResult
from notifiers import messages

log = structlog.get_logger(__name__)


class Runner:
    def __init__(self, config: Config, store: Store, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.outbox_wakeup = asyncio.Event()
        self.started_at = clock()
        #: Base of links in messages; the daemon sets it once the web server is bound.
        self.public_url = config.agent.public_url or ""
        self._states: dict[str, OutageState] = {c.name: OutageState() for c in config.checks}
        self._open: dict[str, Incident] = {}
        self._cm: dict[str, CheckMetrics] = {c.name: metrics.for_check(c.name)
                                             for c in config.checks}
        self.last_results: dict[str, CheckResult] = {}

    def restore(self) -> None:
        now = self.clock()
        for inc in self.store.open_incidents():
            if inc.check is None:
                continue
            if self.config.check(inc.check) is None:
                # The check was removed from the config: nothing will ever resolve it.
                note = f"check {inc.check} is no longer in the configuration"
                gone = incidents.resolve(inc, now=now, actor="onwatch", note=note)
                if gone is not None:
                    self._apply(gone, None)
                continue
            self._open[inc.check] = inc
            self._states[inc.check] = restored_down(inc.started_at)
            self.metrics.check_up.labels(inc.check).set(0)
        self._count_open()
        if self._open:
            log.info("incidents_restored", open=len(self._open))

    def on_result(self, check: CheckConfig, result: CheckResult, lateness: float) -> bool:
        """The scheduler's result handler; returns True to re-check quickly."""
        self.metrics.lateness.observe(lateness)
        self._cm[check.name].record(result)
        self.last_results[check.name] = result
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
            target = KINDS[check.type].target(check.spec)
            tr = incidents.on_signal(self._open.get(check.name), step.signal,
                                     severity=check.severity, target=target, now=self.clock(),
                                     new_id=self.store.next_incident_id())
            if tr is not None:
                self._apply(tr, check)
        return step.recheck

    def health(self, name: str) -> Health:
        return self._states[name].health

    def _apply(self, tr: incidents.Transition, check: CheckConfig | None) -> None:
        inc, now = tr.incident, self.clock()
        outgoing = self._messages(inc, check, tr.notify, now) if check else []
        entries = list(tr.entries) + [
            TimelineEntry(now, "notification_queued", "onwatch",
                          f"{m.event} message queued for {m.contact}", {"message_id": m.id})
            for m in outgoing
        ]
        with self.store.tx():
            self.store.save_incident(inc)
            self.store.append(inc.id, entries)
            for m in outgoing:
                self.store.enqueue(m)
        if inc.is_open and inc.check:
            self._open[inc.check] = inc
        elif inc.check:
            self._open.pop(inc.check, None)
        self._count_open()
        log.warning(f"incident_{tr.notify or 'updated'}", incident=inc.id, check=inc.check,
                    reason=inc.reason, severity=inc.severity, notifications=len(outgoing))
        if outgoing:
            self.outbox_wakeup.set()

    def _messages(self, inc: Incident, check: CheckConfig, event: str | None, now: float
                  ) -> list[OutboxMessage]:
        if event not in ("opened", "resolved"):
            return []
        target = KINDS[check.type].target(check.spec)
        render = messages.opened if event == "opened" else messages.resolved
        title, body = render(inc, target, self.public_url)
        return [OutboxMessage(str(uuid.uuid4()), inc.id, contact, event, title, body, now, now)
                for contact in check.contacts]

    def _count_open(self) -> None:
        counts = {sev: 0 for sev in ("critical", "high", "low")}
        for inc in self._open.values():
            counts[inc.severity] = counts.get(inc.severity, 0) + 1
        for sev, n in counts.items():
            self.metrics.incidents_open.labels(sev).set(n)
