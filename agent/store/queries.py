"""The store's SQL, written once for both stores (SQLite's dialect, `?` parameters).

`SqlStore` holds every query over incidents, timelines, the outbox, prevention
actions and run-time maintenance windows; a store supplies `db` (its statement
runner) and `tx()`. New rows return their id with `RETURNING id` (SQLite 3.35+
and PostgreSQL both have it; `lastrowid` is SQLite's alone). `"end"` is quoted:
PostgreSQL reserves the word.

Reads outside a transaction see committed data; writes belong inside the
caller's `with store.tx():`, so that a transition is stored whole or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent.incidents import Incident, State, TimelineEntry
from agent.store.base import Db
from agent.store.records import Action, OutboxMessage
from agent.vocab import Entry, IncidentKind, Severity


class SqlStore:
    """The queries; subclasses give `db` and the transaction."""

    @property
    def db(self) -> Db:
        raise NotImplementedError

    # incidents ---------------------------------------------------------------

    def next_incident_id(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM incidents").fetchone()
        return int(row[0])

    def save_incident(self, inc: Incident) -> None:
        self.db.execute(
            "INSERT INTO incidents (id, check_name, title, severity, state, reason, opened_at, "
            "started_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, policy, "
            "kind, alert_key, labels) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (id) DO UPDATE SET labels=excluded.labels, "
            "title=excluded.title, severity=excluded.severity, state=excluded.state, "
            "reason=excluded.reason, opened_at=excluded.opened_at, "
            "started_at=excluded.started_at, acknowledged_at=excluded.acknowledged_at, "
            "acknowledged_by=excluded.acknowledged_by, resolved_at=excluded.resolved_at, "
            "resolved_by=excluded.resolved_by, policy=excluded.policy, kind=excluded.kind",
            (inc.id, inc.check, inc.title, inc.severity, inc.state.value, inc.reason,
             inc.opened_at, inc.started_at, inc.acknowledged_at, inc.acknowledged_by,
             inc.resolved_at, inc.resolved_by, inc.policy, inc.kind, inc.key,
             json.dumps(dict(inc.labels))),
        )

    def save_escalation(self, incident_id: int, state: Mapping[str, Any] | None) -> None:
        self.db.execute("UPDATE incidents SET escalation = ? WHERE id = ?",
                         (None if state is None else json.dumps(dict(state)), incident_id))

    def escalation(self, incident_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT escalation FROM incidents WHERE id = ?",
                               (incident_id,)).fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def latest_incident(self, check: str, kind: IncidentKind = IncidentKind.OUTAGE
                        ) -> Incident | None:
        """The check's newest incident of `kind`'s family (an outage that flapped counts)."""
        kinds = [str(k) for k in IncidentKind if k.family is kind.family]
        marks = ",".join("?" * len(kinds))
        row = self.db.execute(f"SELECT * FROM incidents WHERE check_name = ? AND kind IN "
                               f"({marks}) ORDER BY id DESC LIMIT 1", (check, *kinds)).fetchone()
        return _incident(row) if row else None

    def latest_by_key(self, key: str) -> Incident | None:
        """The latest incident an outside sender keyed `key` (an Alertmanager fingerprint)."""
        row = self.db.execute("SELECT * FROM incidents WHERE alert_key = ? ORDER BY id DESC "
                               "LIMIT 1", (key,)).fetchone()
        return _incident(row) if row else None

    def append(self, incident_id: int, entries: Sequence[TimelineEntry]) -> None:
        self.db.executemany(
            "INSERT INTO timeline (incident_id, at, kind, actor, message, data) "
            "VALUES (?,?,?,?,?,?)",
            [(incident_id, e.at, e.kind, e.actor, e.message, json.dumps(dict(e.data)))
             for e in entries],
        )

    def incident(self, incident_id: int) -> Incident | None:
        row = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return _incident(row) if row else None

    def open_incidents(self) -> list[Incident]:
        rows = self.db.execute(
            "SELECT * FROM incidents WHERE state != 'resolved' ORDER BY id").fetchall()
        return [_incident(r) for r in rows]

    def incidents(self, *, open_only: bool = False, limit: int = 50) -> list[Incident]:
        where = "WHERE state != 'resolved'" if open_only else ""
        rows = self.db.execute(
            f"SELECT * FROM incidents {where} ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_incident(r) for r in rows]

    def incidents_between(self, since: float, until: float) -> list[Incident]:
        """Every incident open at some moment of [since, until), oldest first."""
        rows = self.db.execute(
            "SELECT * FROM incidents WHERE opened_at < ? AND (resolved_at IS NULL OR "
            "resolved_at >= ?) ORDER BY id", (until, since)).fetchall()
        return [_incident(r) for r in rows]

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        rows = self.db.execute(
            "SELECT at, kind, actor, message, data FROM timeline WHERE incident_id = ? "
            "ORDER BY seq", (incident_id,)).fetchall()
        return [TimelineEntry(r["at"], Entry(r["kind"]), r["actor"], r["message"],
                              json.loads(r["data"])) for r in rows]

    # outbox ------------------------------------------------------------------

    def enqueue(self, msg: OutboxMessage) -> None:
        self.db.execute(
            "INSERT INTO outbox (id, incident_id, contact, event, title, body, created_at, "
            "next_attempt_at, short, link) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (msg.id, msg.incident_id, msg.contact, msg.event, msg.title, msg.body,
             msg.created_at, msg.next_attempt_at, msg.short, msg.link),
        )

    def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE status = 'due' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?", (now, limit)).fetchall()
        return [OutboxMessage(**dict(r)) for r in rows]

    def next_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'due'").fetchone()
        return None if row[0] is None else float(row[0])

    def outbox_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def update_message(self, msg_id: str, *, status: str, attempts: int, next_attempt_at: float,
                       delivered_at: float | None, last_error: str | None,
                       dead_channels: str = "[]") -> None:
        self.db.execute(
            "UPDATE outbox SET status=?, attempts=?, next_attempt_at=?, delivered_at=?, "
            "last_error=?, dead_channels=? WHERE id=?",
            (status, attempts, next_attempt_at, delivered_at, last_error, dead_channels, msg_id),
        )

    def postpone(self, msg_id: str, until: float) -> None:
        """Hold a due message (storm bundling); not an attempt, nothing else changes."""
        self.db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND status = 'due'",
                         (until, msg_id))

    def oldest_due_created_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(created_at) FROM outbox WHERE status = 'due'").fetchone()
        return None if row[0] is None else float(row[0])

    # prevention actions ------------------------------------------------------------

    def add_action(self, incident_id: int, *, text: str, owner: str, at: float, by: str) -> int:
        row = self.db.execute(
            "INSERT INTO actions (incident_id, text, owner, created_at, created_by) "
            "VALUES (?,?,?,?,?) RETURNING id", (incident_id, text, owner, at, by)).fetchone()
        return int(row[0])

    def finish_action(self, action_id: int, *, at: float, by: str) -> bool:
        cur = self.db.execute("UPDATE actions SET done_at = ?, done_by = ? WHERE id = ? AND "
                               "done_at IS NULL", (at, by, action_id))
        return bool(cur.rowcount > 0)

    def actions(self, *, incident_id: int | None = None, open_only: bool = False
                ) -> list[Action]:
        where, args = ["1=1"], []
        if incident_id is not None:
            where.append("incident_id = ?")
            args.append(incident_id)
        if open_only:
            where.append("done_at IS NULL")
        rows = self.db.execute(f"SELECT * FROM actions WHERE {' AND '.join(where)} ORDER BY id",
                                args).fetchall()
        return [Action(**dict(r)) for r in rows]

    # maintenance windows opened at run time ------------------------------------

    def add_maintenance(self, *, checks: Sequence[str], tags: Sequence[str], start: float,
                        end: float, reason: str, by: str) -> int:
        row = self.db.execute(
            'INSERT INTO maintenance (checks, tags, start, "end", reason, by) '
            "VALUES (?,?,?,?,?,?) RETURNING id",
            (json.dumps(list(checks)), json.dumps(list(tags)), start, end, reason, by)).fetchone()
        return int(row[0])

    def maintenance(self, now: float) -> list[dict[str, Any]]:
        """Windows not yet over at `now` (current and future)."""
        rows = self.db.execute('SELECT * FROM maintenance WHERE "end" > ? ORDER BY start',
                                (now,)).fetchall()
        return [{**dict(r), "checks": json.loads(r["checks"]), "tags": json.loads(r["tags"])}
                for r in rows]

    def end_maintenance(self, window_id: int, now: float) -> bool:
        cur = self.db.execute('UPDATE maintenance SET "end" = ? WHERE id = ? AND "end" > ?',
                               (now, window_id, now))
        return bool(cur.rowcount > 0)

    def messages(self, incident_id: int) -> list[OutboxMessage]:
        rows = self.db.execute("SELECT * FROM outbox WHERE incident_id = ? ORDER BY created_at",
                                (incident_id,)).fetchall()
        return [OutboxMessage(**dict(r)) for r in rows]


def _incident(row: Any) -> Incident:
    return Incident(
        id=row["id"], check=row["check_name"], title=row["title"],
        severity=Severity(row["severity"]),
        state=State(row["state"]), reason=row["reason"], opened_at=row["opened_at"],
        started_at=row["started_at"], acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"], resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"], policy=row["policy"], kind=IncidentKind(row["kind"]),
        key=row["alert_key"], labels=json.loads(row["labels"]),
    )
