"""Escalation model: roles, rotations, business hours, policies, severity routes.

Frozen objects built by `agent.config` from the TOML file; the escalation
planner (`agent.escalation`) reads them and never mutates them. Targets in a
step are contact names or `role:<name>`; a role resolves to contacts at the
moment a notification is due (so a rotation handover mid-incident pages the
new person from then on).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from agent.vocab import Severity

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WHEN = ("always", "business_hours", "outside_business_hours")
AT_END = ("stop", "restart")
_HOURS = re.compile(r"(?P<days>[a-z,-]+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})")


@dataclass(frozen=True, slots=True)
class Rotation:
    """Weekly on-call: `contacts[k]` is on call in the k-th week after `start` (cyclic)."""

    contacts: tuple[str, ...]
    #: A moment of handover, in the business timezone (e.g. Monday 09:00).
    start: dt.datetime
    #: Length of one shift in seconds (default one week).
    shift: float = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    #: Everybody here is paged for the role (when there is no rotation).
    contacts: tuple[str, ...] = ()
    rotation: Rotation | None = None


@dataclass(frozen=True, slots=True)
class Opening:
    """Open from `start` to `end` (minutes after midnight) on `weekday` (0 = Monday)."""

    weekday: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class BusinessHours:
    tz: ZoneInfo
    windows: tuple[Opening, ...] = ()
    holidays: frozenset[dt.date] = frozenset()


@dataclass(frozen=True, slots=True)
class EscalationStep:
    #: Due this long after the incident opened (unless an ack timeout brings it forward).
    after: float
    #: Contact names and `role:<name>` entries.
    notify: tuple[str, ...]
    #: A step whose condition does not hold when it falls due is passed over.
    when: str = "always"


@dataclass(frozen=True, slots=True)
class Updates:
    """Stakeholder updates, separate from the paging chain."""

    notify: tuple[str, ...]
    every: float | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    steps: tuple[EscalationStep, ...]
    #: Nobody acknowledged this long after a step was paged: the next step is paged now.
    ack_timeout: float | None = 900.0
    #: An acknowledgement lasts this long; then, if still open, escalation resumes.
    ack_expiry: float | None = None
    #: Acknowledged but unresolved this long after the acknowledgement: page
    #: step `resolve_escalate_to` (management), without clearing the acknowledgement.
    resolve_timeout: float | None = None
    resolve_escalate_to: int = -1
    #: Re-page the current step every `repeat_every` while unacknowledged, at most
    #: `repeat_max` times per step.
    repeat_every: float | None = None
    repeat_max: int = 0
    #: After the last step: "stop" (say so in the timeline) or "restart" the chain,
    #: at most `max_restarts` times.
    at_end: str = "stop"
    max_restarts: int = 1
    #: A resolved incident whose check fails again within this window is reopened.
    reopen_window: float = 1800.0
    updates: Updates | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Severity routing: incidents of `severity` use `policy` (overriding the check's)."""

    severity: Severity
    policy: str | None = None
    #: Page only inside business hours: outside them the paging waits for the next opening.
    business_hours_only: bool = False


def parse_openings(text: str) -> list[Opening] | None:
    """"mon-fri 09:00-17:30" -> one Opening per day; None when it is not that shape."""
    m = _HOURS.fullmatch(text)
    if m is None:
        return None
    start, end = _minutes(m["start"]), _minutes(m["end"])
    if start is None or end is None or end <= start:
        return None
    days: list[int] = []
    for part in m["days"].split(","):
        lo, _, hi = part.partition("-")
        if lo not in WEEKDAYS or (hi and hi not in WEEKDAYS):
            return None
        a, b = WEEKDAYS.index(lo), WEEKDAYS.index(hi or lo)
        days += range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
    return [Opening(d, start, end) for d in days]


def _minutes(hhmm: str) -> int | None:
    h, m = (int(x) for x in hhmm.split(":"))
    return h * 60 + m if (h < 24 and m < 60) or (h == 24 and m == 0) else None
