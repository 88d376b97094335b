"""The incident state machine. Pure: the time and the new id are arguments.

`on_signal(current, signal, severity=, target=, now=, new_id=, reopen_window=)`
decides what an outage signal does to the check's latest incident: a DOWN
signal opens one (never a second while one is open: dedupe) or reopens a
recent one, an UP signal resolves the open one. Every function returns a
`Transition`: the incident as it becomes, the timeline entries to append and
the `Change` to tell the planner, so that the engine persists all of it in one
transaction before acting.

States: open -> acknowledged -> resolved (an acknowledgement may lapse back to
open). Words come from `agent.vocab`; nothing here parses text.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.detect.outage import Health, Signal
from agent.vocab import Change, Entry, IncidentKind, Severity, Via


class State(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    kind: Entry
    actor: str  # "onwatch" for the agent itself, else a person or channel
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    check: str | None
    title: str
    severity: Severity
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
    #: A check has at most one open incident per kind family (see IncidentKind.family).
    kind: IncidentKind = IncidentKind.OUTAGE
    #: For incidents sent in from outside (kind ALERT): the sender's key (an
    #: Alertmanager fingerprint) that finds the incident again, and the alert's labels.
    key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.state is not State.RESOLVED


@dataclass(frozen=True, slots=True)
class Transition:
    incident: Incident
    entries: tuple[TimelineEntry, ...]
    #: What the planner is told (its messages follow from it); None for nothing.
    notify: Change | None


def on_signal(current: Incident | None, signal: Signal, *, severity: Severity, target: str,
              now: float, new_id: int, reopen_window: float = 0.0) -> Transition | None:
    """What `signal` does to the check's latest incident (`current`), or None for nothing.

    A failure soon after a recovery (within `reopen_window`) reopens the same
    incident rather than paging a new one: a fix that did not hold is one story.
    An incident a person resolved stays closed: they said that story ended, so a
    failure after it is a new incident (and pages as one).
    """
    if signal.kind is Health.DOWN:
        if current is not None and current.is_open:
            return None  # dedupe: one open incident per check
        if (current is not None and current.resolved_at is not None
                and current.resolved_by == "onwatch"
                and now - current.resolved_at <= reopen_window):
            return reopen(current, signal, now=now)
        title = f"{signal.check} is down"
        inc = Incident(new_id, signal.check, title, severity, State.OPEN, signal.reason, now,
                       signal.since)
        entry = TimelineEntry(now, Entry.OPENED, "onwatch", f"{title}: {signal.reason}", {
            "target": target, "error_kind": str(signal.error_kind or ""),
            "first_failure_at": signal.since,
        })
        return Transition(inc, (entry,), Change.OPENED)
    if current is None or not current.is_open:
        return None
    return resolve(current, now=now, actor="onwatch",
                   note=f"{signal.check} recovered: {signal.reason}")


def resolve(inc: Incident, *, now: float, actor: str, note: str, cause: str | None = None,
            fix: str | None = None, via: Via | None = None) -> Transition | None:
    """Resolved; a person's `cause` and `fix` (and how they came) are kept for the report."""
    if not inc.is_open:
        return None
    done = replace(inc, state=State.RESOLVED, resolved_at=now, resolved_by=actor)
    data: dict[str, Any] = {"duration_s": now - inc.started_at}
    if cause is not None or fix is not None:
        data.update(cause=cause or "", fix=fix or "")
    if via is not None:
        data["via"] = str(via)
    entry = TimelineEntry(now, Entry.RESOLVED, actor, note, data)
    return Transition(done, (entry,), Change.RESOLVED)


def acknowledge(inc: Incident, *, now: float, by: str, via: Via) -> Transition | None:
    """Somebody took it: escalation stops (until an ack expiry, if the policy has one).

    None when the incident is resolved or already acknowledged (the caller
    says "already acknowledged by X" from `inc.acknowledged_by`).
    """
    if inc.state is not State.OPEN:
        return None
    done = replace(inc, state=State.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=by)
    entry = TimelineEntry(now, Entry.ACKNOWLEDGED, by, f"acknowledged by {by} via {via}",
                          {"via": str(via)})
    return Transition(done, (entry,), Change.ACKNOWLEDGED)


def unacknowledge(inc: Incident, *, now: float, reason: str) -> Transition | None:
    """The acknowledgement lapsed (ack expiry): back to open, escalation resumes."""
    if inc.state is not State.ACKNOWLEDGED:
        return None
    back = replace(inc, state=State.OPEN, acknowledged_at=None, acknowledged_by=None)
    return Transition(back, (TimelineEntry(now, Entry.ACK_EXPIRED, "onwatch", reason),),
                      Change.REOPENED)


def reopen(inc: Incident, signal: Signal, *, now: float) -> Transition:
    """A resolved incident whose check failed again within the policy's window."""
    back = replace(inc, state=State.OPEN, reason=signal.reason, resolved_at=None,
                   resolved_by=None, acknowledged_at=None, acknowledged_by=None, opened_at=now,
                   started_at=signal.since)
    entry = TimelineEntry(now, Entry.REOPENED, "onwatch",
                          f"{signal.check} failed again: {signal.reason}",
                          {"error_kind": str(signal.error_kind or ""),
                           "first_failure_at": signal.since})
    return Transition(back, (entry,), Change.OPENED)


def declare(*, new_id: int, title: str, severity: Severity, by: str, reason: str, now: float
            ) -> Transition:
    """A manual incident, for what no check can see (a suspected breach)."""
    inc = Incident(new_id, None, title, severity, State.OPEN, reason, now, now)
    entry = TimelineEntry(now, Entry.OPENED, by, f"declared by {by}: {title}",
                          {"severity": str(severity), "manual": True})
    return Transition(inc, (entry,), Change.OPENED)


def note(inc: Incident, *, now: float, by: str, text: str, via: Via | None = None
         ) -> TimelineEntry:
    return TimelineEntry(now, Entry.NOTE, by, text, {"via": str(via)} if via else {})


def flapping_started(current: Incident | None, check: str, *, severity: Severity, detail: str,
                     now: float, new_id: int) -> Transition:
    """One incident for a flapping check: the open outage becomes it, or a new one opens."""
    title = f"{check} is flapping"
    entry = TimelineEntry(now, Entry.FLAPPING, "onwatch",
                          f"{title}: {detail}; its ups and downs are not paged one by one "
                          "until it settles")
    if current is not None and current.is_open:
        return Transition(replace(current, title=title, kind=IncidentKind.FLAPPING), (entry,),
                          None)
    inc = Incident(new_id, check, title, severity, State.OPEN, detail, now, now,
                   kind=IncidentKind.FLAPPING)
    return Transition(inc, (entry,), Change.OPENED)


def flapping_stopped(inc: Incident, *, up: bool, now: float) -> Transition | None:
    """The check settled: resolved if it settled up, an ordinary outage if down."""
    check = inc.check or inc.title
    if up:
        return resolve(inc, now=now, actor="onwatch", note=f"{check} settled: up and stable")
    entry = TimelineEntry(now, Entry.FLAPPING_ENDED, "onwatch", f"{check} settled, but down")
    return Transition(replace(inc, title=f"{check} is down", kind=IncidentKind.OUTAGE),
                      (entry,), None)


TITLES = {IncidentKind.DEGRADED: "{} is degraded", IncidentKind.CHANGED: "{} changed unexpectedly",
          IncidentKind.EXPIRING: "{}: certificate expiring",
          IncidentKind.FILLING: "{}: disk filling up"}


def observed(kind: IncidentKind, check: str, *, severity: Severity, reason: str, now: float,
             new_id: int) -> Transition:
    """An incident of another kind than an outage (degraded, changed, expiring, filling)."""
    title = TITLES.get(kind, "{} needs attention").format(check)
    inc = Incident(new_id, check, title, severity, State.OPEN, reason, now, now, kind=kind)
    return Transition(inc, (TimelineEntry(now, Entry.OPENED, "onwatch", f"{title}: {reason}"),),
                      Change.OPENED)


def change_severity(inc: Incident, *, severity: Severity, reason: str, now: float) -> Transition:
    entry = TimelineEntry(now, Entry.SEVERITY_CHANGED, "onwatch",
                          f"severity {inc.severity} -> {severity}: {reason}")
    return Transition(replace(inc, severity=severity, reason=reason), (entry,), None)
