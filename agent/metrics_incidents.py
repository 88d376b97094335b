"""Metrics of what onwatch does with incidents: for a review dashboard and alert rules.

| metric                                          | labels            | counted when              |
|-------------------------------------------------|-------------------|---------------------------|
| `onwatch_incidents_opened_total`                | severity, kind    | opened or reopened        |
| `onwatch_incidents_current`                     | state             | now (open, acknowledged)  |
| `onwatch_incident_acknowledge_seconds`          | severity          | from opened to acked      |
| `onwatch_incident_resolve_seconds`              | severity          | from opened to resolved   |
| `onwatch_escalation_steps_total`                | policy, step      | a step is paged           |
| `onwatch_pages_total`                           | outcome           | a paging message is       |
|                                                 |                   | delivered, retried, held  |
|                                                 |                   | or failed                 |
| `onwatch_intake_alerts_received_total`          | source, outcome   | an alert is applied       |
| `onwatch_intake_requests_rejected_total`        | source, reason    | a request is refused      |

Labels are bounded: severities, kinds, states and outcomes are fixed words;
policies and intake sources come from the config; steps are numbered within
a policy. The engine calls `changed` for every transition it persists, the
outbox `page_outcome` for every paging message it records, the intake
`received`/`rejected`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent.escalation import Page
from agent.incidents import Incident, State
from agent.vocab import Change, Entry, Event

_HUMAN_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
                  43200.0, 86400.0)
_RESOLVE_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
                    259200.0, 604800.0)
#: Outbox timeline kinds -> page outcomes.
PAGE_OUTCOMES = {Entry.NOTIFICATION_DELIVERED: "delivered", Entry.NOTIFICATION_RETRY: "retried",
                 Entry.NOTIFICATION_HELD: "held", Entry.NOTIFICATION_FAILED: "failed"}
REJECT_REASONS = ("unauthorized", "too_large", "malformed", "unknown_webhook", "disabled")


class IncidentMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.opened = Counter("onwatch_incidents_opened_total", "Incidents opened (or reopened)",
                              ["severity", "kind"], registry=r)
        self.current = Gauge("onwatch_incidents_current", "Incidents not resolved, by state",
                             ["state"], registry=r)
        for state in (State.OPEN, State.ACKNOWLEDGED):
            self.current.labels(state.value).set(0)
        self.to_ack = Histogram("onwatch_incident_acknowledge_seconds",
                                "From an incident opening to its acknowledgement",
                                ["severity"], buckets=_HUMAN_BUCKETS, registry=r)
        self.to_resolve = Histogram("onwatch_incident_resolve_seconds",
                                    "From an incident opening to its resolution",
                                    ["severity"], buckets=_RESOLVE_BUCKETS, registry=r)
        self.steps = Counter("onwatch_escalation_steps_total",
                             "Escalation steps paged, by policy and step number (1 = first)",
                             ["policy", "step"], registry=r)
        self.pages = Counter("onwatch_pages_total",
                             "Paging messages recorded by the outbox, by outcome", ["outcome"],
                             registry=r)
        for outcome in PAGE_OUTCOMES.values():
            self.pages.labels(outcome)
        self.intake = Counter("onwatch_intake_alerts_received_total",
                              "Alerts sent in (Alertmanager, webhooks), by what they did",
                              ["source", "outcome"], registry=r)
        self.rejected = Counter("onwatch_intake_requests_rejected_total",
                                "Intake requests refused, by reason", ["source", "reason"],
                                registry=r)

    def changed(self, notify: Change | None, inc: Incident, pages: Sequence[Page], now: float
                ) -> None:
        """One persisted transition (`notify` as in `Transition.notify`) and its pages."""
        if notify is Change.OPENED:
            self.opened.labels(inc.severity, inc.kind).inc()
        elif notify is Change.ACKNOWLEDGED and inc.acknowledged_at is not None:
            self.to_ack.labels(inc.severity).observe(max(0.0, inc.acknowledged_at
                                                         - inc.opened_at))
        elif notify is Change.RESOLVED and inc.resolved_at is not None:
            self.to_resolve.labels(inc.severity).observe(max(0.0, inc.resolved_at
                                                             - inc.opened_at))
        for page in pages:
            if page.event is Event.PAGE:
                self.steps.labels(inc.policy or "contacts", str(page.step + 1)).inc()

    def count_current(self, live: Iterable[Incident]) -> None:
        counts = {State.OPEN: 0, State.ACKNOWLEDGED: 0}
        for inc in live:
            if inc.state in counts:
                counts[inc.state] += 1
        for state, n in counts.items():
            self.current.labels(state.value).set(n)

    def page_outcome(self, paging: bool, timeline_kind: Entry) -> None:
        """One outbox record of a message; only messages that ask someone to act count."""
        outcome = PAGE_OUTCOMES.get(timeline_kind)
        if paging and outcome is not None:
            self.pages.labels(outcome).inc()

    def received(self, source: str, outcome: str) -> None:
        self.intake.labels(source, outcome).inc()

    def rejected_request(self, source: str, reason: str) -> None:
        self.rejected.labels(source, reason).inc()
