"""Escalation model: roles, rotations, business hours, policies, severity routes.

Frozen objects built by `agent.config` from the TOML file; the escalation
planner (`agent.escalation`) reads them and never mutates them. Targets in a
step are contact names or `role:<name>`; a role resolves to contacts at the
moment a notification is due (so a rotation handover mid-incident pages the
new person from then on).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WHEN = ("always", "business_hours", "outside_business_hours")
AT_END = ("stop", "restart")


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
class Window:
    """Open from `start` to `end` (minutes after midnight) on `weekday` (0 = Monday)."""

    weekday: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class BusinessHours:
    tz: ZoneInfo
    windows: tuple[Window, ...] = ()
    holidays: frozenset[dt.date] = frozenset()


@dataclass(frozen=True, slots=True)
class Step:
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
    steps: tuple[Step, ...]
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

    severity: str
    policy: str | None = None
    #: Page only inside business hours: outside them the paging waits for the next opening.
    business_hours_only: bool = False
