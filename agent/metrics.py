"""Prometheus metrics: one registry per agent for the agent-wide series, and
`metrics_checks.CheckSeries` for the per-check ones.

Names are `onwatch_<noun>_<unit>`, one unit per metric; labels are bounded
(check names come from the config, results from `ErrorKind`, channel kinds
from Apprise schemes): never free text. What probes observe goes to one
family per unit (`metrics_observations`); incidents, escalation, pages and
the intake are counted in `metrics_incidents`. The per-check series are not
prometheus_client children: with thousands of checks those cost seconds per
scrape and most of the agent's memory (see `metrics_checks`). `exposition_parts()`
is the whole /metrics text: the registry's part, then the checks' part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from agent.metrics_checks import CheckMetrics, CheckSeries
from agent.metrics_incidents import IncidentMetrics
from agent.vocab import SEVERITIES
from checks.result import ErrorKind

if TYPE_CHECKING:
    from agent.config_service import ServiceSettings
    from agent.incidents import Incident

__all__ = ["RESULTS", "CheckMetrics", "Metrics"]
_LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
                     1.0, 5.0)
RESULTS = ("ok", "degraded", *(k.value for k in ErrorKind))


class Metrics:
    def __init__(self, version: str = "0.1.0", settings: ServiceSettings | None = None) -> None:
        # `_created` series double the series count and no dashboard of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        Info("onwatch_build", "onwatch version", registry=r).info({"version": version})
        self.checks = CheckSeries(settings)
        self.incidents_open = Gauge("onwatch_incidents_open", "Open incidents", ["severity"],
                                    registry=r)
        self.incidents = IncidentMetrics(r)
        self.notifications = Counter("onwatch_notifications_total",
                                     "Notification deliveries per channel by result",
                                     ["channel_kind", "result"], registry=r)
        self.outbox_due = Gauge("onwatch_outbox_due_messages",
                                "Notifications stored as due and not yet delivered", registry=r)
        self.outbox_oldest_age = Gauge("onwatch_outbox_oldest_due_age_seconds",
                                       "Age of the oldest notification not yet delivered "
                                       "(0 when none)", registry=r)
        self.delivery_latency = Histogram("onwatch_notification_delivery_seconds",
                                          "From a notification being due to its delivery",
                                          buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
                                          registry=r)
        self.uplink_up = Gauge("onwatch_uplink_up", "0 while no notification service can be "
                               "reached at all (the agent's own uplink is down)", registry=r)
        self.uplink_up.set(1)
        self.store_errors = Counter("onwatch_store_errors_total",
                                    "Store writes that failed (disk full, locked, read-only); "
                                    "the transitions wait in memory and are retried",
                                    registry=r)
        self.leader = Gauge("onwatch_leader", "1 while this instance leads (opens incidents, "
                            "pages); 0 on a standby. Always 1 on SQLite", registry=r)
        self.leader.set(1)
        self.lateness = Histogram("onwatch_scheduler_lateness_seconds",
                                  "How late a probe started after its due time",
                                  buckets=_LATENESS_BUCKETS, registry=r)

    def count_open(self, open_incidents: list[Incident]) -> None:
        """The open-incident gauges, from the engine's live incidents."""
        counts = dict.fromkeys(SEVERITIES, 0)
        for inc in open_incidents:
            counts[inc.severity] = counts.get(inc.severity, 0) + 1
        for sev, n in counts.items():
            self.incidents_open.labels(sev).set(n)
        self.incidents.count_current(open_incidents)

    def for_check(self, name: str) -> CheckMetrics:
        return self.checks.for_check(name)

    def exposition_parts(self) -> list[bytes]:
        """The /metrics text (format 0.0.4) as parts to join; on the event loop, since the
        values are written there (the checks' part is mostly cached lines)."""
        return [generate_latest(self.registry), *self.checks.chunks()]
