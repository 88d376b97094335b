"""The status page's tables, in the same store (SQLite or PostgreSQL): uptime, public
notices, subscribers.

- `uptime_daily`: one row per check and local day (up, down and maintenance
  seconds), upserted in batches and pruned past RETAIN_DAYS: about 90 rows a
  check, never one row per run.
- `public_notices`: what customers were told, and when: opening, update and
  closing notices of incidents, maintenance announcements. Only customer
  wording is ever written here; it is what every public surface reads.
- `subscribers`: e-mail subscriptions (pending until confirmed). Addresses
  are private: they leave this module only to be mailed.
- `status_mail`: subscriber mail, written before it is sent (in the same
  transaction as the notice it carries) and marked after: nothing is lost.

Writes go inside the caller's `store.tx()`; reads are plain.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from agent.store.base import Db, Store

RETAIN_DAYS = 100
#: Subscriber mail delivered, failed or dropped is kept this long (for a person asking why).
MAIL_KEPT = 7 * 86400.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS uptime_daily (
    check_name TEXT NOT NULL, day TEXT NOT NULL,
    up_s REAL NOT NULL DEFAULT 0, down_s REAL NOT NULL DEFAULT 0,
    maint_s REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (check_name, day)
);
CREATE TABLE IF NOT EXISTS public_notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER, window_id TEXT,
    kind TEXT NOT NULL, at REAL NOT NULL, text TEXT NOT NULL,
    components TEXT NOT NULL DEFAULT '[]', by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS public_notices_incident ON public_notices (incident_id, id);
CREATE TABLE IF NOT EXISTS subscribers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
    created_at REAL NOT NULL, confirmed_at REAL, last_mail_at REAL,
    nonce TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status_mail (
    id TEXT PRIMARY KEY, subscriber_id INTEGER NOT NULL, kind TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL, unsubscribe TEXT NOT NULL,
    created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'due',
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS status_mail_due ON status_mail (status, next_attempt_at);
"""


@dataclass(frozen=True, slots=True)
class Notice:
    id: int
    incident_id: int | None
    window_id: str | None
    kind: str  # opening, update, closing, maintenance
    at: float
    text: str
    components: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    address: str
    state: str  # pending, confirmed, unsubscribed
    created_at: float
    last_mail_at: float | None
    #: Random per subscription, under every link's MAC: a re-subscription voids old links.
    nonce: str


@dataclass(frozen=True, slots=True)
class Mail:
    id: str
    subscriber_id: int
    kind: str  # confirm, notice
    subject: str
    body: str
    unsubscribe: str
    created_at: float
    next_attempt_at: float
    attempts: int
    status: str


class StatusStore:
    def __init__(self, store: Store, *, create: bool = True) -> None:
        self.store = store
        self._db: Db = store.db
        if create:  # additive only, like the main schema: never drops anything
            store.create_tables(_SCHEMA)

    # uptime ------------------------------------------------------------------

    def add_uptime(self, rows: Sequence[tuple[str, str, float, float, float]]) -> None:
        """(check, day, up_s, down_s, maint_s) increments; one statement per row."""
        self._db.executemany(
            "INSERT INTO uptime_daily VALUES (?,?,?,?,?) ON CONFLICT (check_name, day) DO "
            "UPDATE SET up_s = uptime_daily.up_s + excluded.up_s, "
            "down_s = uptime_daily.down_s + excluded.down_s, "
            "maint_s = uptime_daily.maint_s + excluded.maint_s", rows)

    def prune_uptime(self, oldest_day: str) -> None:
        self._db.execute("DELETE FROM uptime_daily WHERE day < ?", (oldest_day,))

    def prune(self, now: float) -> None:
        """Bounded tables: notices past the history kept, mail done with a week ago."""
        self._db.execute("DELETE FROM public_notices WHERE at < ?", (now - RETAIN_DAYS * 86400,))
        self._db.execute("DELETE FROM status_mail WHERE status != 'due' AND next_attempt_at < ?",
                         (now - MAIL_KEPT,))

    def uptime(self, since_day: str) -> dict[str, dict[str, tuple[float, float, float]]]:
        """check -> day -> (up_s, down_s, maint_s), for days >= since_day."""
        out: dict[str, dict[str, tuple[float, float, float]]] = {}
        for r in self._db.execute("SELECT * FROM uptime_daily WHERE day >= ?", (since_day,)):
            out.setdefault(r[0], {})[r[1]] = (r[2], r[3], r[4])
        return out

    # notices -----------------------------------------------------------------

    def add_notice(self, *, kind: str, at: float, text: str, components: Sequence[str],
                   incident_id: int | None = None, window_id: str | None = None,
                   by: str = "") -> int:
        row = self._db.execute(
            "INSERT INTO public_notices (incident_id, window_id, kind, at, text, components, by)"
            " VALUES (?,?,?,?,?,?,?) RETURNING id",
            (incident_id, window_id, kind, at, text, json.dumps(list(components)), by)).fetchone()
        return int(row[0])

    def notices(self, *, since: float = 0.0, incident_id: int | None = None,
                limit: int = 500) -> list[Notice]:
        """Newest first."""
        where, args = "at >= ?", [since]
        if incident_id is not None:
            where += " AND incident_id = ?"
            args.append(incident_id)
        rows = self._db.execute(f"SELECT * FROM public_notices WHERE {where} "
                                "ORDER BY at DESC, id DESC LIMIT ?", (*args, limit))
        return [Notice(r["id"], r["incident_id"], r["window_id"], r["kind"], r["at"], r["text"],
                       tuple(json.loads(r["components"]))) for r in rows]

    def announced(self, window_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM public_notices WHERE window_id = ? LIMIT 1",
                                (window_id,)).fetchone() is not None

    # subscribers --------------------------------------------------------------

    def subscriber(self, *, sid: int | None = None, address: str | None = None
                   ) -> Subscriber | None:
        col, val = ("id", sid) if sid is not None else ("address", address)
        row = self._db.execute(f"SELECT * FROM subscribers WHERE {col} = ?", (val,)).fetchone()
        return None if row is None else Subscriber(row["id"], row["address"], row["state"],
                                                   row["created_at"], row["last_mail_at"],
                                                   row["nonce"])

    def pending_count(self) -> int:
        return int(self._db.execute(
            "SELECT COUNT(*) FROM subscribers WHERE state = 'pending'").fetchone()[0])

    def subscribe(self, address: str, now: float) -> Subscriber:
        """A new pending subscription, or the address's row reset to pending (a fresh nonce)."""
        nonce = secrets.token_urlsafe(12)
        self._db.execute(
            "INSERT INTO subscribers (address, state, created_at, nonce) VALUES (?,?,?,?) "
            "ON CONFLICT (address) DO UPDATE SET state = 'pending', created_at = excluded."
            "created_at, confirmed_at = NULL, nonce = excluded.nonce",
            (address, "pending", now, nonce))
        found = self.subscriber(address=address)
        assert found is not None
        return found

    def set_state(self, sid: int, state: str, now: float) -> None:
        self._db.execute("UPDATE subscribers SET state = ?, confirmed_at = CASE WHEN ? = "
                         "'confirmed' THEN ? ELSE confirmed_at END WHERE id = ?",
                         (state, state, now, sid))

    def touch(self, sid: int, now: float) -> None:
        self._db.execute("UPDATE subscribers SET last_mail_at = ? WHERE id = ?", (now, sid))

    def expire_pending(self, older_than: float) -> None:
        """Unconfirmed subscriptions past their link's life are forgotten (address and all)."""
        self._db.execute("DELETE FROM subscribers WHERE state = 'pending' AND created_at < ?",
                         (older_than,))

    def confirmed(self) -> list[Subscriber]:
        rows = self._db.execute("SELECT * FROM subscribers WHERE state = 'confirmed' "
                                "ORDER BY id").fetchall()
        return [Subscriber(r["id"], r["address"], r["state"], r["created_at"],
                           r["last_mail_at"], r["nonce"]) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM subscribers GROUP BY state")
        return {r[0]: int(r[1]) for r in rows}

    # subscriber mail ------------------------------------------------------------

    def enqueue_mail(self, *, sid: int, kind: str, subject: str, body: str, unsubscribe: str,
                     now: float) -> str:
        mail_id = secrets.token_hex(12)
        self._db.execute(
            "INSERT INTO status_mail (id, subscriber_id, kind, subject, body, unsubscribe, "
            "created_at, next_attempt_at) VALUES (?,?,?,?,?,?,?,?)",
            (mail_id, sid, kind, subject, body, unsubscribe, now, now))
        return mail_id

    def due_mail(self, now: float, limit: int) -> list[Mail]:
        rows = self._db.execute(
            "SELECT * FROM status_mail WHERE status = 'due' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?", (now, limit)).fetchall()
        return [Mail(r["id"], r["subscriber_id"], r["kind"], r["subject"], r["body"],
                     r["unsubscribe"], r["created_at"], r["next_attempt_at"], r["attempts"],
                     r["status"])
                for r in rows]

    def next_mail_at(self) -> float | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM status_mail WHERE status = 'due'").fetchone()
        return None if row[0] is None else float(row[0])

    def mark_mail(self, mail_id: str, *, status: str, attempts: int, next_attempt_at: float,
                  error: str | None) -> None:
        self._db.execute("UPDATE status_mail SET status = ?, attempts = ?, next_attempt_at = ?,"
                         " last_error = ? WHERE id = ?",
                         (status, attempts, next_attempt_at, error, mail_id))

    def mail_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM status_mail GROUP BY status")
        return {r[0]: int(r[1]) for r in rows}
