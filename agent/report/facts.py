"""The facts of one incident, read from what the store holds. Pure: no I/O, no clock.

`incident_facts(incident, timeline, messages, actions, now=)` turns the stored
story of one incident into the figures a report and a review are made of:
when it began, was detected, acknowledged and resolved (and so the times to
detect, acknowledge and resolve), each page sent (who, when, which tier and
event, over which channels, delivered or not, answered or not), the tier the
escalation reached, the cause and fix a person gave, and the prevention
actions. Everything comes from typed timeline data (`agent.vocab.Entry`) and
outbox rows; nothing is recovered by reading message text.

Definitions (also in the README's "reports and reviews" section):
- time to detect: from the first failed run to the incident opening;
- time to acknowledge: from opening to the first acknowledgement;
- time to resolve: from opening to resolution;
- impact: from the first failed run to resolution (what customers felt);
- tier reached: the highest escalation step paged, counted from 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.incidents import Incident, TimelineEntry
from agent.store.records import Action, OutboxMessage
from agent.vocab import PAGING_EVENTS, Entry, Event


@dataclass(frozen=True, slots=True)
class Channel:
    #: Redacted channel (never a secret), its kind of outcome and what the service said.
    channel: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class PageSent:
    at: float
    contact: str
    event: Event
    #: Escalation step, from 1 (0: not a step, e.g. an update or the resolution notice).
    tier: int
    message_id: str
    #: due, delivered or failed (the outbox's word).
    status: str
    delivered_at: float | None
    channels: tuple[Channel, ...]
    #: This person acknowledged the incident (after being paged).
    answered: bool

    @property
    def paging(self) -> bool:
        return self.event in PAGING_EVENTS


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    incident: Incident
    timeline: tuple[TimelineEntry, ...]
    pages: tuple[PageSent, ...]
    actions: tuple[Action, ...]
    acknowledged_at: float | None
    acknowledged_by: str | None
    acknowledged_via: str | None
    cause: str
    fix: str
    #: Incident still open at `now`: its durations run to `now`.
    ended_at: float

    @property
    def time_to_detect(self) -> float:
        return max(0.0, self.incident.opened_at - self.incident.started_at)

    @property
    def time_to_acknowledge(self) -> float | None:
        if self.acknowledged_at is None:
            return None
        return max(0.0, self.acknowledged_at - self.incident.opened_at)

    @property
    def time_to_resolve(self) -> float | None:
        if self.incident.resolved_at is None:
            return None
        return max(0.0, self.incident.resolved_at - self.incident.opened_at)

    @property
    def impact(self) -> float:
        return max(0.0, self.ended_at - self.incident.started_at)

    @property
    def tier_reached(self) -> int:
        return max((p.tier for p in self.pages if p.paging), default=0)

    @property
    def resolved_by_person(self) -> bool:
        return self.incident.resolved_by not in (None, "onwatch")


def incident_facts(inc: Incident, timeline: Sequence[TimelineEntry],
                   messages: Sequence[OutboxMessage], actions: Sequence[Action], *,
                   now: float) -> IncidentFacts:
    ack = next((e for e in timeline if e.kind is Entry.ACKNOWLEDGED), None)
    resolved = next((e for e in reversed(timeline) if e.kind is Entry.RESOLVED), None)
    data: Mapping[str, Any] = resolved.data if resolved is not None else {}
    acked_by = ack.actor if ack is not None else None
    return IncidentFacts(
        inc, tuple(timeline), _pages(timeline, messages, acked_by), tuple(actions),
        ack.at if ack is not None else None, acked_by,
        str(ack.data.get("via", "")) if ack is not None else None,
        str(data.get("cause", "")), str(data.get("fix", "")),
        inc.resolved_at if inc.resolved_at is not None else now)


def _event(text: str) -> Event:
    try:
        return Event(text)
    except ValueError:  # written by a newer onwatch: count it as a page, the safe side
        return Event.PAGE


def _pages(timeline: Sequence[TimelineEntry], messages: Sequence[OutboxMessage],
           acked_by: str | None) -> tuple[PageSent, ...]:
    rows = {m.id: m for m in messages}
    outcome: dict[str, tuple[Channel, ...]] = {}
    for e in timeline:
        if e.kind is Entry.NOTIFICATION_DELIVERED or e.kind is Entry.NOTIFICATION_FAILED \
                or e.kind is Entry.NOTIFICATION_RETRY:
            outcome[str(e.data.get("message_id", ""))] = tuple(
                Channel(str(c.get("channel", "")), bool(c.get("ok")), str(c.get("detail", "")))
                for c in e.data.get("channels", ()) if isinstance(c, Mapping))
    out = []
    for e in timeline:
        if e.kind is not Entry.NOTIFICATION_QUEUED:
            continue
        mid = str(e.data.get("message_id", ""))
        row = rows.get(mid)
        contact = str(e.data.get("contact", row.contact if row else ""))
        event = str(e.data.get("event", row.event if row else ""))
        step = e.data.get("step", -1)
        out.append(PageSent(
            e.at, contact, _event(event),
            int(step) + 1 if isinstance(step, int) and step >= 0 else 0, mid,
            row.status if row else "unknown", row.delivered_at if row else None,
            outcome.get(mid, ()), acked_by == contact))
    return tuple(out)
