"""Prometheus metrics: one registry per agent, children resolved once per check.

Names are `onwatch_<noun>_<unit>`, one unit per metric; labels are bounded
(check names come from the config, results from `ErrorKind`, channel kinds
from Apprise schemes): never free text. What probes observe goes to one
family per unit (`metrics_observations`); incidents, escalation, pages and
the intake are counted in `metrics_incidents`. Per-check children are looked
up once at start, because a `.labels()` call costs more than the rest of
recording a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)

from agent import metrics_observations as observations
from agent.metrics_incidents import IncidentMetrics
from agent.vocab import SEVERITIES
from checks.result import CheckResult, ErrorKind

if TYPE_CHECKING:
    from agent.incidents import Incident

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
                     1.0, 5.0)
RESULTS = ("ok", "degraded", *(k.value for k in ErrorKind))


@dataclass(slots=True)
class CheckMetrics:
    name: str
    duration: Histogram
    runs: dict[str, Counter]
    families: Mapping[str, Gauge]
    #: Children of the observation families, looked up once per observation key;
    #: None for a key that is not exported (a fingerprint).
    _obs: dict[str, tuple[Gauge, float] | None] = field(default_factory=dict)

    def record(self, result: CheckResult) -> None:
        self.duration.observe(result.latency_s)
        for key, value in result.observations.items():
            if key not in self._obs:
                self._obs[key] = observations.child(self.families, self.name, key)
            child = self._obs[key]
            if child is not None:
                child[0].set(value * child[1])
        if result.ok:
            self.runs["degraded" if result.degraded else "ok"].inc()
        else:
            self.runs[(result.error_kind or ErrorKind.INTERNAL).value].inc()


class Metrics:
    def __init__(self, version: str = "0.1.0") -> None:
        # `_created` series double the series count and no dashboard of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        Info("onwatch_build", "onwatch version", registry=r).info({"version": version})
        self.check_up = Gauge("onwatch_check_up", "1 when the check is up, 0 when down "
                              "(confirmed), absent until known", ["check"], registry=r)
        self.check_duration = Histogram("onwatch_check_duration_seconds",
                                        "Probe latency (to headers for http)", ["check"],
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.observation_families = observations.families(r)
        self.check_runs = Counter("onwatch_check_runs_total", "Probe runs by result",
                                  ["check", "result"], registry=r)
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
        return CheckMetrics(
            name,
            self.check_duration.labels(name),
            {res: self.check_runs.labels(name, res) for res in RESULTS},
            self.observation_families,
        )
