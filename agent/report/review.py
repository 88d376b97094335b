"""The periodic review: does the escalation process work? Pure: the period is an argument.

`review(facts, checks=, since=, until=, hours=, tz=, open_actions=)` takes the
facts of every incident that overlaps the period and computes:

- per check: incidents, uptime (the share of the period not inside an outage
  incident, flapping included; other kinds do not make a check down), mean
  and worst time to acknowledge and to resolve;
- which tier incidents reached and how often escalation went past the first
  person; pages per person, how many at night (22:00-07:00 local) and how
  many outside business hours; pages of incidents nobody acknowledged;
- noisy checks: short incidents (under `SHORT`) that resolved by themselves
  without anyone acknowledging, and flapping incidents;
- open prevention actions;
- suggestions drawn from these figures, each naming its figure.

Only pages (paging events: page, repeat, ack expired, resolve timeout)
count as pages; updates and resolution notices do not wake anyone up.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean
from zoneinfo import ZoneInfo

from agent.calendar import in_business_hours
from agent.policy import BusinessHours
from agent.report.facts import IncidentFacts
from agent.store.records import Action
from agent.vocab import Entry, IncidentKind

#: An incident shorter than this that resolved itself without an acknowledgement is noise.
SHORT = 300.0
NIGHT = (22, 7)  # local hours: from 22:00 to 07:00


@dataclass(frozen=True, slots=True)
class CheckFigures:
    check: str
    incidents: int
    outages: int
    downtime_s: float
    uptime: float  # 0..1 over the period
    mean_tta: float | None
    worst_tta: float | None
    mean_ttr: float | None
    worst_ttr: float | None
    short_self_resolved: int
    flapping: int


@dataclass(frozen=True, slots=True)
class PersonFigures:
    contact: str
    pages: int
    at_night: int
    outside_hours: int


@dataclass(slots=True)
class Review:
    since: float
    until: float
    incidents: int
    checks: list[CheckFigures]
    #: tier -> incidents whose highest tier paged was that (0: nobody paged).
    tiers: dict[int, int]
    past_first: int
    people: list[PersonFigures]
    unanswered_pages: int
    unanswered_incidents: list[int]
    open_actions: list[Action]
    suggestions: list[str] = field(default_factory=list)


def _mean(xs: Sequence[float]) -> float | None:
    return fmean(xs) if xs else None


def _overlap(a: float, b: float, since: float, until: float) -> float:
    return max(0.0, min(b, until) - max(a, since))


def _check(name: str, facts: Sequence[IncidentFacts], since: float, until: float
           ) -> CheckFigures:
    mine = [f for f in facts if f.incident.check == name]
    outages = [f for f in mine if f.incident.kind.marks_down]
    down = sum(_overlap(f.incident.started_at, f.ended_at, since, until) for f in outages)
    ttas = [t for f in mine if (t := f.time_to_acknowledge) is not None]
    ttrs = [t for f in mine if (t := f.time_to_resolve) is not None]
    short = sum(1 for f in mine if f.incident.resolved_at is not None
                and f.impact < SHORT and f.acknowledged_at is None and not f.resolved_by_person)
    flaps = sum(1 for f in mine if f.incident.kind is IncidentKind.FLAPPING
                or any(e.kind is Entry.FLAPPING for e in f.timeline))
    span = max(until - since, 1e-9)
    return CheckFigures(name, len(mine), len(outages), down, 1.0 - down / span, _mean(ttas),
                        max(ttas, default=None), _mean(ttrs), max(ttrs, default=None), short,
                        flaps)


def _night(ts: float, tz: ZoneInfo) -> bool:
    hour = dt.datetime.fromtimestamp(ts, tz).hour
    return hour >= NIGHT[0] or hour < NIGHT[1]


def review(facts: Sequence[IncidentFacts], *, checks: Sequence[str], since: float,
           until: float, tz: ZoneInfo, hours: BusinessHours | None = None,
           open_actions: Sequence[Action] = ()) -> Review:
    facts = [f for f in facts if f.incident.opened_at < until and f.ended_at >= since]
    names = list(dict.fromkeys([*checks, *(f.incident.check for f in facts if f.incident.check)]))
    per_check = [_check(n, facts, since, until) for n in names]
    tiers = Counter(f.tier_reached for f in facts)
    pages = [p for f in facts for p in f.pages if p.paging and since <= p.at < until]
    people = []
    for contact in sorted({p.contact for p in pages}):
        mine = [p for p in pages if p.contact == contact]
        people.append(PersonFigures(
            contact, len(mine), sum(_night(p.at, tz) for p in mine),
            sum(not in_business_hours(hours, p.at) for p in mine) if hours else 0))
    unanswered = [f for f in facts if f.acknowledged_at is None and any(p.paging for p in f.pages)]
    out = Review(since, until, len(facts), per_check, dict(sorted(tiers.items())),
                 sum(n for t, n in tiers.items() if t >= 2), people,
                 sum(1 for f in unanswered for p in f.pages if p.paging),
                 [f.incident.id for f in unanswered], list(open_actions))
    out.suggestions = suggestions(out, facts, tz, until)
    return out


def suggestions(r: Review, facts: Sequence[IncidentFacts], tz: ZoneInfo, until: float
                ) -> list[str]:
    """Concrete changes the figures argue for, most useful first."""
    out: list[str] = []
    low_night = Counter((p.contact, f.incident.check or f.incident.title) for f in facts
                        if f.incident.severity == "low" for p in f.pages
                        if p.paging and _night(p.at, tz))
    for (who, check), n in low_night.most_common():
        if n >= 3:
            out.append(f"{who} got {n} pages at night for `{check}` (low severity): route low "
                       "severity to business hours ([[routes]] business_hours_only = true).")
    for c in r.checks:
        if c.short_self_resolved >= 3:
            out.append(f"`{c.check}` opened {c.short_self_resolved} short incidents that ended "
                       "by themselves: raise its confirm count or recheck interval.")
        if c.flapping:
            out.append(f"`{c.check}` flapped {c.flapping} time(s): find what makes it unstable "
                       "before it hides a real outage.")
    paged = sum(n for t, n in r.tiers.items() if t >= 1)
    if paged and r.past_first * 2 > paged:
        out.append(f"Escalation went past the first person in {r.past_first} of {paged} paged "
                   "incidents: check the first tier's availability or the ack timeout.")
    if r.unanswered_incidents:
        out.append(f"{r.unanswered_pages} page(s) in {len(r.unanswered_incidents)} incident(s) "
                   "were never acknowledged: make sure people can acknowledge from their phone "
                   "(a reply channel or a reachable public_url).")
    stale = [a for a in r.open_actions if until - a.created_at > 30 * 86400]
    if stale:
        out.append(f"{len(stale)} prevention action(s) open for more than 30 days: "
                   + ", ".join(f"#{a.id} ({a.owner})" for a in stale) + ".")
    return out
