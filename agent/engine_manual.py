"""What a person can do to an incident's escalation by hand: escalate now, snooze.

Functions over the engine (its methods of the same names call them), so that
these are incident changes like any other: the pure planner
(`escalation.escalate_now`, `escalation.snooze`) says what the state becomes,
and `apply` persists it with its timeline entry and the pages it leads to in one
transaction, then plans at once (an escalation pages in the same call).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from agent import escalation
from agent.errors import Conflict, Invalid
from agent.incidents import Incident, State, TimelineEntry, Transition
from agent.vocab import Entry, Via

if TYPE_CHECKING:
    from agent.engine import Engine

#: A snooze longer than this is a typo; a day covers "until the morning".
MAX_SNOOZE_S = 24 * 3600.0


def escalate_now(engine: Engine, incident_id: int, *, by: str, via: Via) -> Incident:
    """Page the next step now instead of waiting for the ack timeout."""
    inc = engine._open_incident(incident_id)
    if inc.state is State.ACKNOWLEDGED:
        raise Conflict(f"incident #{inc.id} is acknowledged by {inc.acknowledged_by}: "
                       "nothing escalates while somebody has it")
    live, now = engine._live[inc.id], engine.clock()
    state = escalation.escalate_now(live.state, engine.policy(inc), now)
    if state is None:
        raise Conflict(f"incident #{inc.id} has no further step to page (its chain ended)")
    entry = TimelineEntry(now, Entry.ESCALATE_REQUESTED, by,
                          f"{by} asked to escalate now (via {via})", {"via": str(via)})
    return engine.apply(Transition(inc, (entry,), None), state)


def snooze(engine: Engine, incident_id: int, *, by: str, via: Via, seconds: float,
           tz: dt.tzinfo | None = None) -> Incident:
    """No pages for `seconds` (at most MAX_SNOOZE_S); every timer moves by as much."""
    if not 0 < seconds <= MAX_SNOOZE_S:
        raise Invalid("a snooze lasts more than 0 and at most 24 hours")
    inc = engine._open_incident(incident_id)
    live, now = engine._live[inc.id], engine.clock()
    until = now + seconds
    local = dt.datetime.fromtimestamp(until, tz).strftime("%a %d %b %H:%M")
    entry = TimelineEntry(now, Entry.SNOOZED, by,
                          f"{by} snoozed paging until {local} (via {via})",
                          {"via": str(via), "until": until})
    return engine.apply(Transition(inc, (entry,), None),
                        escalation.snooze(live.state, until, now))
