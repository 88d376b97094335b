"""The incident state machine. Pure: the time and the new id are arguments.

`on_signal(current, signal, check, now, new_id)` decides what a detection
signal does to the check's incident: a DOWN signal opens one (never a second
while one is open: dedupe), an UP signal resolves the open one. Every
transition returns the timeline entries to append and the event to notify,
so the runner can persist all of it in one transaction before acting.

States: open -> acknowledged -> resolved. Acknowledgement, reopen and manual
incidents are driven by the escalation layer and reuse `TimelineEntry`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.detect.outage import Health, Signal


class State(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    kind: str  # opened, notified, delivery, resolved, note, ...
    actor: str  # "onwatch" for the agent itself, else a person or channel
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    check: str | None
    title: str
    severity: str
    state: State
    reason: str
    opened_at: float
    #: When the underlying problem began (first failed run), which precedes opened_at.
    started_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    #: The escalation policy governing it ("" for a check's implicit contacts-only policy).
    policy: str | None = None
    #: outage (down), degraded (a sustained change), ...: a check has at most one open
    #: incident of each kind.
    kind: str = "outage"

    @property
    def is_open(self) -> bool:
        return self.state is not State.RESOLVED


@dataclass(frozen=True, slots=True)
class Transition:
    incident: Incident
    entries: tuple[TimelineEntry, ...]
    #: "opened" or "resolved": the event whose message goes to the contacts.
    notify: str | None


def on_signal(current: Incident | None, signal: Signal, *, severity: str, target: str,
              now: float, new_id: int, reopen_window: float = 0.0) -> Transition | None:
    """What `signal` does to the check's latest incident (`current`), or None for nothing.

    A failure soon after a resolution (within `reopen_window`) reopens the same
    incident rather than paging a new one: a fix that did not hold is one story.
    """
    if signal.kind is Health.DOWN:
        if current is not None and current.is_open:
            return None  # dedupe: one open incident per check
        if (current is not None and current.resolved_at is not None
                and now - current.resolved_at <= reopen_window):
            return reopen(current, signal, now=now)
        title = f"{signal.check} is down"
        inc = Incident(new_id, signal.check, title, severity, State.OPEN, signal.reason, now,
                       signal.since)
        entry = TimelineEntry(now, "opened", "onwatch", f"{title}: {signal.reason}", {
            "target": target, "error_kind": str(signal.error_kind or ""),
            "first_failure_at": signal.since,
        })
        return Transition(inc, (entry,), "opened")
    if current is None or not current.is_open:
        return None
    return resolve(current, now=now, actor="onwatch",
                   note=f"{signal.check} recovered: {signal.reason}")


def resolve(inc: Incident, *, now: float, actor: str, note: str) -> Transition | None:
    if not inc.is_open:
        return None
    done = replace(inc, state=State.RESOLVED, resolved_at=now, resolved_by=actor)
    entry = TimelineEntry(now, "resolved", actor, note, {"duration_s": now - inc.started_at})
    return Transition(done, (entry,), "resolved")


def acknowledge(inc: Incident, *, now: float, by: str, via: str) -> Transition | None:
    """Somebody took it: escalation stops (until an ack expiry, if the policy has one).

    None when the incident is resolved or already acknowledged (the caller
    says "already acknowledged by X" from `inc.acknowledged_by`).
    """
    if inc.state is not State.OPEN:
        return None
    done = replace(inc, state=State.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=by)
    entry = TimelineEntry(now, "acknowledged", by, f"acknowledged by {by} via {via}", {"via": via})
    return Transition(done, (entry,), "acknowledged")


def unacknowledge(inc: Incident, *, now: float, reason: str) -> Transition | None:
    """The acknowledgement lapsed (ack expiry): back to open, escalation resumes."""
    if inc.state is not State.ACKNOWLEDGED:
        return None
    back = replace(inc, state=State.OPEN, acknowledged_at=None, acknowledged_by=None)
    return Transition(back, (TimelineEntry(now, "ack_expired", "onwatch", reason),), "reopened")


def reopen(inc: Incident, signal: Signal, *, now: float) -> Transition:
    """A resolved incident whose check failed again within the policy's window."""
    back = replace(inc, state=State.OPEN, reason=signal.reason, resolved_at=None,
                   resolved_by=None, acknowledged_at=None, acknowledged_by=None, opened_at=now,
                   started_at=signal.since)
    entry = TimelineEntry(now, "reopened", "onwatch",
                          f"{signal.check} failed again: {signal.reason}",
                          {"error_kind": str(signal.error_kind or ""),
                           "first_failure_at": signal.since})
    return Transition(back, (entry,), "opened")


def declare(*, new_id: int, title: str, severity: str, by: str, reason: str, now: float
            ) -> Transition:
    """A manual incident, for what no check can see (a suspected breach)."""
    inc = Incident(new_id, None, title, severity, State.OPEN, reason, now, now)
    entry = TimelineEntry(now, "opened", by, f"declared by {by}: {title}",
                          {"severity": severity, "manual": True})
    return Transition(inc, (entry,), "opened")


def note(inc: Incident, *, now: float, by: str, text: str) -> TimelineEntry:
    return TimelineEntry(now, "note", by, text)


def flapping_started(current: Incident | None, check: str, *, severity: str, detail: str,
                     now: float, new_id: int) -> Transition:
    """One incident for a flapping check: the open one retitled, or a new one."""
    title = f"{check} is flapping"
    entry = TimelineEntry(now, "flapping", "onwatch",
                          f"{title}: {detail}; its ups and downs are not paged one by one "
                          "until it settles")
    if current is not None and current.is_open:
        return Transition(replace(current, title=title), (entry,), None)
    inc = Incident(new_id, check, title, severity, State.OPEN, detail, now, now)
    return Transition(inc, (entry,), "opened")


def flapping_stopped(inc: Incident, *, up: bool, now: float) -> Transition | None:
    """The check settled: resolved if it settled up, an ordinary outage if down."""
    check = inc.check or inc.title
    if up:
        return resolve(inc, now=now, actor="onwatch", note=f"{check} settled: up and stable")
    entry = TimelineEntry(now, "flapping_ended", "onwatch", f"{check} settled, but down")
    return Transition(replace(inc, title=f"{check} is down"), (entry,), None)


TITLES = {"degraded": "{} is degraded", "changed": "{} changed unexpectedly",
          "expiring": "{}: certificate expiring", "filling": "{}: disk filling up"}


def observed(kind: str, check: str, *, severity: str, reason: str, now: float, new_id: int
             ) -> Transition:
    """An incident of another kind than an outage (degraded, changed, expiring, filling)."""
    title = TITLES.get(kind, "{} needs attention").format(check)
    inc = Incident(new_id, check, title, severity, State.OPEN, reason, now, now, kind=kind)
    return Transition(inc, (TimelineEntry(now, "opened", "onwatch", f"{title}: {reason}"),),
                      "opened")


def change_severity(inc: Incident, *, severity: str, reason: str, now: float) -> Transition:
    entry = TimelineEntry(now, "severity_changed", "onwatch",
                          f"severity {inc.severity} -> {severity}: {reason}")
    return Transition(replace(inc, severity=severity, reason=reason), (entry,), None)
