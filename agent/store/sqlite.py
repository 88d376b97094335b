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

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.store import migrations, upkeep
from agent.store.base import Db, StoreError
from agent.store.queries import SqlStore

__all__ = ["SCHEMA", "SCHEMA_VERSION", "SqliteStore", "Store", "StoreDamaged", "StoreError",
           "damaged",
           "is_damage"]

SCHEMA_VERSION = migrations.SCHEMA_VERSION
#: The current shape; agent/store/migrations.py takes older stores here step by step.
#: A new column or index goes here AND into a new step there (with SCHEMA_VERSION + 1).
SCHEMA = """
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
    "end" REAL NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL
);
"""


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


class SqliteStore(SqlStore):
    """The embedded store: one file in the state directory (agent/store/base.py's contract)."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path: Path | str = path

    @classmethod
    def open(cls, state_dir: Path, *, readonly: bool = False) -> SqliteStore:
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
                migrations.prepare(conn, path, SCHEMA)
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
        return upkeep.prune(self, cutoff, batch=batch)

    def vacuum(self) -> int:
        return upkeep.vacuum(self._db)

    def shared_secret(self, name: str, local: bytes) -> bytes:
        """One agent per file: its own secret is the one."""
        return local

    def fence(self) -> None:
        """One agent per file (agent/store/lock.py): it always may send."""

    def backup(self, dest: Path) -> None:
        migrations.keep_copy(self._db, dest)

    def touch(self) -> None:
        """A write that changes nothing: raises sqlite3.Error when the store cannot be written."""
        with self.tx():
            self._db.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")

    @property
    def conn(self) -> sqlite3.Connection:
        """The SQLite connection itself (SQLite-only work: backups, PRAGMAs)."""
        return self._db

    @property
    def db(self) -> Db:
        return self._db

    def create_tables(self, schema: str) -> None:
        """Tables of other modules (CREATE ... IF NOT EXISTS: additive, never drops)."""
        self._db.executescript(schema)

    @contextmanager
    def tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


#: The name callers used before there were two stores.
Store = SqliteStore
