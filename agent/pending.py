"""Transitions the store could not take yet: kept in memory, written when it can.

A full disk, a store locked by another process past SQLite's busy timeout, a
file made read-only for a moment: the engine's transaction (incident, its
escalation state, its timeline, its outbox messages) fails. Dropping it lost
the incident for good: after space returned no incident ever opened and no page
went out. Instead the engine puts the write here (`add`), the outbox delivers
its messages from memory at once (agent/outbox.py, `deliver_unstored`), and the
engine retries `flush` every second until the store takes everything, in the
order it happened, with the times it happened at.

While writes are pending, `problem` says why (for /healthz, which answers 503
with it) and every failure counts in `onwatch_store_errors_total`. Messages
delivered from memory are written as delivered (`settle`), so they are not sent
twice; one still in flight when the store comes back is written as due a minute
later, and its delivery outcome is recorded on the row as usual.

Ids: incidents not yet stored still own their id (`next_id`), so a new incident
never reuses one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from agent.incidents import Incident, TimelineEntry
from agent.store.base import Store
from agent.store.records import OutboxMessage
from agent.vocab import Entry

log = structlog.get_logger(__name__)

#: An unsettled message written by a flush waits this long for its in-memory delivery.
IN_FLIGHT_GRACE_S = 60.0
#: While writes are pending, the engine retries this often.
RETRY_S = 1.0


@dataclass
class _Write:
    incident: Incident
    escalation: dict[str, Any] | None
    entries: list[TimelineEntry] = field(default_factory=list)
    messages: dict[str, OutboxMessage] = field(default_factory=dict)
    #: Handed to the outbox's from-memory delivery (every message of a refused write).
    in_flight: set[str] = field(default_factory=set)
    settled: set[str] = field(default_factory=set)
    #: Writes of others that belong to the same transaction (the status page's notices).
    after: list[Callable[[], None]] = field(default_factory=list)


class PendingWrites:
    def __init__(self, on_failure: Callable[[], None] = lambda: None) -> None:
        #: Called for every failed write (the engine counts onwatch_store_errors_total).
        self._on_failure = on_failure
        self._writes: dict[int, _Write] = {}
        #: Why the store refuses writes now (None: it takes them).
        self.problem: str | None = None
        self.failures = 0
        self._stored_next = 1

    def __bool__(self) -> bool:
        return bool(self._writes)

    def add(self, inc: Incident, escalation: dict[str, Any] | None,
            entries: list[TimelineEntry], messages: list[OutboxMessage],
            after: Sequence[Callable[[], None]] = ()) -> None:
        """One transition's write, merged with what is pending for the same incident."""
        w = self._writes.get(inc.id)
        if w is None:
            w = self._writes[inc.id] = _Write(inc, escalation)
        w.incident, w.escalation = inc, escalation
        w.entries += entries
        w.messages.update((m.id, m) for m in messages)
        w.after += after

    def next_id(self, store: Store) -> int:
        """The next incident id, counting incidents the store has not taken yet (and, when
        the store cannot be read at all -- a database down -- the last it said)."""
        with contextlib.suppress(*store.errors):
            self._stored_next = store.next_incident_id()
        return max([self._stored_next, *(i + 1 for i in self._writes)])

    def settle(self, msg_id: str, delivered: bool, now: float) -> bool:
        """Record a from-memory delivery; False when the message is in the store already."""
        for w in self._writes.values():
            msg = w.messages.get(msg_id)
            if msg is not None:
                if delivered:
                    w.messages[msg_id] = replace(msg, status="delivered", attempts=1,
                                                 delivered_at=now)
                    w.entries.append(TimelineEntry(
                        now, Entry.NOTIFICATION_DELIVERED, msg.contact,
                        f"{msg.event} message delivered to {msg.contact} (sent from memory: "
                        "the store could not be written)", {"message_id": msg.id}))
                w.settled.add(msg_id)
                return True
        return False

    def flush(self, store: Store, now: float) -> bool:
        """Write everything pending in one transaction; True when nothing is pending now."""
        if not self._writes:
            return True
        try:
            with store.tx():
                for w in self._writes.values():
                    store.save_incident(w.incident)
                    store.save_escalation(w.incident.id, w.escalation)
                    store.append(w.incident.id, w.entries)
                    for m in w.messages.values():
                        if m.id in w.in_flight - w.settled:  # its delivery is under way
                            m = replace(m, next_attempt_at=max(m.next_attempt_at,
                                                               now + IN_FLIGHT_GRACE_S))
                        store.enqueue(m)
                        if m.status == "delivered":
                            store.update_message(m.id, status="delivered", attempts=m.attempts,
                                                 next_attempt_at=now, delivered_at=m.delivered_at,
                                                 last_error=None, dead_channels="[]")
                    for write in w.after:
                        write()
        except store.errors as exc:
            for w in self._writes.values():  # the engine sends them from memory now
                w.in_flight.update(w.messages)
            self.failures += 1
            self._on_failure()
            first = self.problem is None
            self.problem = f"the store at {store.path} cannot be written: {exc}"
            if first:
                log.error("store_write_failed", error=str(exc), pending=len(self._writes),
                          path=str(store.path), note="kept in memory, retried every second")
            return False
        if self.problem is not None:
            log.warning("store_write_recovered", written=len(self._writes))
        self._writes.clear()
        self.problem = None
        return True
