"""The store's record types that the pure core reads too: `OutboxMessage`, one
notification due (or done) for one contact; `Action`, one prevention action
agreed after an incident, tracked until done.

Kept apart from the SQLite module so that pure modules (storm bundling) can take
these records without importing sqlite3; each store backend builds them from its
rows (`OutboxMessage(**row)`: the field names are the outbox table's columns).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: str
    incident_id: int | None
    contact: str
    #: An `agent.vocab.Event` value (the row keeps it as text).
    event: str
    title: str
    body: str
    created_at: float
    next_attempt_at: float
    attempts: int = 0
    status: str = "due"  # due, delivered, failed
    delivered_at: float | None = None
    last_error: str | None = None
    #: The one-line form for SMS-like channels.
    short: str = ""
    #: JSON list of redacted channels that failed permanently: not tried again.
    dead_channels: str = "[]"
    #: The acknowledgement link the message carries for its recipient ("" for none):
    #: a storm bundle keeps it without reading the rendered body.
    link: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    id: int
    incident_id: int
    text: str
    #: Who will do it (a contact's name or any person's).
    owner: str
    created_at: float
    created_by: str
    done_at: float | None = None
    done_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.done_at is None
