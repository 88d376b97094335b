"""What an alert sent in from outside does to its incident. Pure: time and id are arguments.

`on_alert(current, event, now=, new_id=)` takes the latest incident with the
event's key (or None) and returns the transition to persist (None for
nothing) and the outcome, one of `OUTCOMES` (a metric label):

- firing, no open incident and a new episode -> "opened": a new incident,
  kind ALERT, its title, reason, severity and labels from the event;
- firing, the same episode again (Alertmanager re-sends every
  `repeat_interval`, and after a restart) -> "duplicate": nothing changes,
  whether the incident is open, acknowledged, or was resolved by a person;
- firing, open, a later episode (the alert resolved and fired again while no
  resolution reached us) -> "updated": a timeline entry, no new page;
- resolved, an open incident of this or a later episode -> "resolved";
- resolved with nothing open (resolved before firing, a re-sent resolution,
  an older episode's) -> "ignored".

An episode is identified by the alert's start time (`startsAt`); a generic
webhook that gives none (`episode_known` False) is in the same episode for as
long as its incident is open.
"""

from __future__ import annotations

from dataclasses import replace

from agent import incidents
from agent.incidents import Incident, State, TimelineEntry, Transition
from agent.intake import AlertEvent
from agent.vocab import Change, Entry, IncidentKind

OUTCOMES = ("opened", "updated", "resolved", "duplicate", "ignored")
#: Start times are compared with this slack: they pass through JSON and float.
_SAME = 0.001


def on_alert(current: Incident | None, ev: AlertEvent, *, now: float, new_id: int
             ) -> tuple[Transition | None, str]:
    if not ev.firing:
        return _resolved(current, ev, now)
    if current is not None and (ev.starts_at <= current.started_at + _SAME
                                or (current.is_open and not ev.episode_known)):
        return None, "duplicate"  # this episode (or an older one) was seen already
    if current is not None and current.is_open:
        entry = TimelineEntry(now, Entry.ALERT_REFIRED, ev.source,
                              f"{ev.source}: fired again: {ev.reason}",
                              {"starts_at": ev.starts_at, "url": ev.url})
        return Transition(replace(current, started_at=ev.starts_at, reason=ev.reason,
                                  labels=ev.labels), (entry,), None), "updated"
    return opened(ev, now=now, new_id=new_id), "opened"


def opened(ev: AlertEvent, *, now: float, new_id: int) -> Transition:
    inc = Incident(new_id, None, ev.title, ev.severity, State.OPEN, ev.reason, now, ev.starts_at,
                   policy=ev.policy, kind=IncidentKind.ALERT, key=ev.key, labels=ev.labels)
    data = {"source": ev.source, "labels": dict(ev.labels), "starts_at": ev.starts_at,
            "url": ev.url}
    entries = [TimelineEntry(now, Entry.OPENED, ev.source, f"{ev.title}: {ev.reason}", data)]
    entries += [TimelineEntry(now, Entry.NOTE, "onwatch", note) for note in ev.notes]
    return Transition(inc, tuple(entries), Change.OPENED)


def _resolved(current: Incident | None, ev: AlertEvent, now: float
              ) -> tuple[Transition | None, str]:
    if current is None or not current.is_open or (
            ev.episode_known and ev.starts_at < current.started_at - _SAME):
        return None, "ignored"  # nothing open, or the resolution of an older episode
    tr = incidents.resolve(current, now=now, actor=ev.source, note=f"resolved in {ev.source}")
    return tr, ("resolved" if tr is not None else "ignored")
