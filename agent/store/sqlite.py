"""SQLite store: incidents, their timelines, the notification outbox.

The only place where state lives. One file, WAL mode so that the CLI can read
while the daemon writes. Writes happen on transitions (rare), not on every
check run, so plain `sqlite3` on the event loop is cheaper than a thread hop;
each transition is one transaction (`with store.tx():`) so that an incident,
its timeline entries and its outbox messages are stored together or not at all.

Opening never destroys anything: a file that cannot be opened or written is
reported with its path (`StoreError`), and the schema is only ever created
or migrated forward.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.incidents import Incident, State, TimelineEntry
from agent.store import migrations, upkeep
from agent.store.records import Action, OutboxMessage
from agent.vocab import Entry, IncidentKind, Severity

SCHEMA_VERSION = migrations.SCHEMA_VERSION
#: The current shape; agent/store/migrations.py takes older stores here step by step.
#: A new column or index goes here AND into a new step there (with SCHEMA_VERSION + 1).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    check_name TEXT,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    opened_at REAL NOT NULL,
    started_at REAL NOT NULL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    resolved_at REAL,
    resolved_by TEXT,
    policy TEXT,
    escalation TEXT,
    kind TEXT NOT NULL DEFAULT 'outage',
    alert_key TEXT,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (state, check_name);
CREATE INDEX IF NOT EXISTS incidents_alert_key ON incidents (alert_key);
CREATE INDEX IF NOT EXISTS incidents_resolved ON incidents (resolved_at) WHERE state = 'resolved';
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident_id, seq);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    incident_id INTEGER REFERENCES incidents (id),
    contact TEXT NOT NULL,
    event TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'due',
    delivered_at REAL,
    last_error TEXT,
    short TEXT NOT NULL DEFAULT '',
    dead_channels TEXT NOT NULL DEFAULT '[]',
    link TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_done ON outbox (status, delivered_at);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    text TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    done_at REAL,
    done_by TEXT
);
CREATE INDEX IF NOT EXISTS actions_incident ON actions (incident_id);
CREATE TABLE IF NOT EXISTS maintenance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    checks TEXT NOT NULL,
    tags TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL
);
"""


class StoreError(Exception):
    """The state directory or database cannot be used; the message names it."""


def is_damage(exc: sqlite3.Error) -> bool:
    """True when SQLite says the file itself is broken (not locked, not unreadable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or any(
        w in str(exc) for w in ("malformed", "not a database", "corrupt"))


class StoreDamaged(StoreError):
    """The database file is broken; nothing the agent can fix by itself."""


def damaged(path: Path, exc: sqlite3.Error) -> StoreDamaged:
    """What to say about a damaged store: where it is, and the two ways out."""
    return StoreDamaged(
        f"the store at {path} is damaged ({exc}). Stop onwatch, then restore the file from "
        f"a backup, or move it aside to start with an empty store: mv {path} "
        f"{path}.damaged (and its -wal and -shm files, if any)")


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path = path

    @classmethod
    def open(cls, state_dir: Path, *, readonly: bool = False) -> Store:
        path = state_dir / "onwatch.db"
        try:
            if readonly:
                if not path.exists():
                    raise StoreError(f"no database at {path}: has `onwatch run` been started "
                                     "with this config?")
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
                migrations.check_readable(conn, path)
            else:
                state_dir.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                migrations.prepare(conn, path, _SCHEMA)
            # Short: the event loop waits this long on a locked store before the write is
            # kept in memory and retried (agent/pending.py); WAL readers never hold it up.
            conn.execute("PRAGMA busy_timeout=250")
            # Read-only opening reads nothing: make a file that is no database say so now.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.row_factory = sqlite3.Row
        except OSError as exc:
            raise StoreError(f"state directory {state_dir} cannot be used: "
                             f"{exc.strerror or exc}; set [agent] state_dir to a writable "
                             "directory") from None
        except migrations.NewerStore as exc:
            raise StoreError(str(exc)) from None
        except sqlite3.Error as exc:
            if is_damage(exc):
                raise damaged(path, exc) from None
            raise StoreError(f"database {path} cannot be {'read' if readonly else 'written'}: "
                             f"{exc}; check the permissions of {state_dir}") from None
        return cls(conn, path)

    def close(self) -> None:
        self._db.close()

    def prune(self, cutoff: float, *, batch: int = upkeep.BATCH) -> upkeep.Pruned:
        """Delete what finished before `cutoff` (agent/store/upkeep.py says what exactly)."""
        return upkeep.prune(self._db, cutoff, batch=batch)

    def vacuum(self) -> int:
        return upkeep.vacuum(self._db)

    def backup(self, dest: Path) -> None:
        migrations.keep_copy(self._db, dest)

    def touch(self) -> None:
        """A write that changes nothing: raises sqlite3.Error when the store cannot be written."""
        with self.tx():
            self._db.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, for the store's other tables (agent/store/status.py)."""
        return self._db

    @contextmanager
    def tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # incidents ---------------------------------------------------------------

    def next_incident_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM incidents").fetchone()
        return int(row[0])

    def save_incident(self, inc: Incident) -> None:
        self._db.execute(
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
        self._db.execute("UPDATE incidents SET escalation = ? WHERE id = ?",
                         (None if state is None else json.dumps(dict(state)), incident_id))

    def escalation(self, incident_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT escalation FROM incidents WHERE id = ?",
                               (incident_id,)).fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def latest_incident(self, check: str, kind: IncidentKind = IncidentKind.OUTAGE
                        ) -> Incident | None:
        """The check's newest incident of `kind`'s family (an outage that flapped counts)."""
        kinds = [str(k) for k in IncidentKind if k.family is kind.family]
        marks = ",".join("?" * len(kinds))
        row = self._db.execute(f"SELECT * FROM incidents WHERE check_name = ? AND kind IN "
                               f"({marks}) ORDER BY id DESC LIMIT 1", (check, *kinds)).fetchone()
        return _incident(row) if row else None

    def latest_by_key(self, key: str) -> Incident | None:
        """The latest incident an outside sender keyed `key` (an Alertmanager fingerprint)."""
        row = self._db.execute("SELECT * FROM incidents WHERE alert_key = ? ORDER BY id DESC "
                               "LIMIT 1", (key,)).fetchone()
        return _incident(row) if row else None

    def append(self, incident_id: int, entries: Sequence[TimelineEntry]) -> None:
        self._db.executemany(
            "INSERT INTO timeline (incident_id, at, kind, actor, message, data) "
            "VALUES (?,?,?,?,?,?)",
            [(incident_id, e.at, e.kind, e.actor, e.message, json.dumps(dict(e.data)))
             for e in entries],
        )

    def incident(self, incident_id: int) -> Incident | None:
        row = self._db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return _incident(row) if row else None

    def open_incidents(self) -> list[Incident]:
        rows = self._db.execute(
            "SELECT * FROM incidents WHERE state != 'resolved' ORDER BY id").fetchall()
        return [_incident(r) for r in rows]

    def incidents(self, *, open_only: bool = False, limit: int = 50) -> list[Incident]:
        where = "WHERE state != 'resolved'" if open_only else ""
        rows = self._db.execute(
            f"SELECT * FROM incidents {where} ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_incident(r) for r in rows]

    def incidents_between(self, since: float, until: float) -> list[Incident]:
        """Every incident open at some moment of [since, until), oldest first."""
        rows = self._db.execute(
            "SELECT * FROM incidents WHERE opened_at < ? AND (resolved_at IS NULL OR "
            "resolved_at >= ?) ORDER BY id", (until, since)).fetchall()
        return [_incident(r) for r in rows]

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        rows = self._db.execute(
            "SELECT at, kind, actor, message, data FROM timeline WHERE incident_id = ? "
            "ORDER BY seq", (incident_id,)).fetchall()
        return [TimelineEntry(r["at"], Entry(r["kind"]), r["actor"], r["message"],
                              json.loads(r["data"])) for r in rows]

    # outbox ------------------------------------------------------------------

    def enqueue(self, msg: OutboxMessage) -> None:
        self._db.execute(
            "INSERT INTO outbox (id, incident_id, contact, event, title, body, created_at, "
            "next_attempt_at, short, link) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (msg.id, msg.incident_id, msg.contact, msg.event, msg.title, msg.body,
             msg.created_at, msg.next_attempt_at, msg.short, msg.link),
        )

    def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE status = 'due' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?", (now, limit)).fetchall()
        return [OutboxMessage(**dict(r)) for r in rows]

    def next_due_at(self) -> float | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'due'").fetchone()
        return None if row[0] is None else float(row[0])

    def outbox_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def update_message(self, msg_id: str, *, status: str, attempts: int, next_attempt_at: float,
                       delivered_at: float | None, last_error: str | None,
                       dead_channels: str = "[]") -> None:
        self._db.execute(
            "UPDATE outbox SET status=?, attempts=?, next_attempt_at=?, delivered_at=?, "
            "last_error=?, dead_channels=? WHERE id=?",
            (status, attempts, next_attempt_at, delivered_at, last_error, dead_channels, msg_id),
        )

    def postpone(self, msg_id: str, until: float) -> None:
        """Hold a due message (storm bundling); not an attempt, nothing else changes."""
        self._db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND status = 'due'",
                         (until, msg_id))

    def oldest_due_created_at(self) -> float | None:
        row = self._db.execute(
            "SELECT MIN(created_at) FROM outbox WHERE status = 'due'").fetchone()
        return None if row[0] is None else float(row[0])

    # prevention actions ------------------------------------------------------------

    def add_action(self, incident_id: int, *, text: str, owner: str, at: float, by: str) -> int:
        cur = self._db.execute(
            "INSERT INTO actions (incident_id, text, owner, created_at, created_by) "
            "VALUES (?,?,?,?,?)", (incident_id, text, owner, at, by))
        return int(cur.lastrowid or 0)

    def finish_action(self, action_id: int, *, at: float, by: str) -> bool:
        cur = self._db.execute("UPDATE actions SET done_at = ?, done_by = ? WHERE id = ? AND "
                               "done_at IS NULL", (at, by, action_id))
        return cur.rowcount > 0

    def actions(self, *, incident_id: int | None = None, open_only: bool = False
                ) -> list[Action]:
        where, args = ["1=1"], []
        if incident_id is not None:
            where.append("incident_id = ?")
            args.append(incident_id)
        if open_only:
            where.append("done_at IS NULL")
        rows = self._db.execute(f"SELECT * FROM actions WHERE {' AND '.join(where)} ORDER BY id",
                                args).fetchall()
        return [Action(**dict(r)) for r in rows]

    # maintenance windows opened at run time ------------------------------------

    def add_maintenance(self, *, checks: Sequence[str], tags: Sequence[str], start: float,
                        end: float, reason: str, by: str) -> int:
        cur = self._db.execute(
            "INSERT INTO maintenance (checks, tags, start, end, reason, by) VALUES (?,?,?,?,?,?)",
            (json.dumps(list(checks)), json.dumps(list(tags)), start, end, reason, by))
        return int(cur.lastrowid or 0)

    def maintenance(self, now: float) -> list[dict[str, Any]]:
        """Windows not yet over at `now` (current and future)."""
        rows = self._db.execute("SELECT * FROM maintenance WHERE end > ? ORDER BY start",
                                (now,)).fetchall()
        return [{**dict(r), "checks": json.loads(r["checks"]), "tags": json.loads(r["tags"])}
                for r in rows]

    def end_maintenance(self, window_id: int, now: float) -> bool:
        cur = self._db.execute("UPDATE maintenance SET end = ? WHERE id = ? AND end > ?",
                               (now, window_id, now))
        return cur.rowcount > 0

    def messages(self, incident_id: int) -> list[OutboxMessage]:
        rows = self._db.execute("SELECT * FROM outbox WHERE incident_id = ? ORDER BY created_at",
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
