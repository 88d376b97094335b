"""Schema versions of the SQLite store: recorded, checked, migrated forward one step at a time.

`prepare(conn, path, schema)` is called by `Store.open` on a writable
connection, before anything else touches the tables:

- a new, empty database gets incremental auto-vacuum (so that pruning
  gives space back) and the current schema, recorded as SCHEMA_VERSION;
- a store of an older version is first copied beside itself
  (`onwatch.db.v1.bak`, through SQLite's backup API, so the copy is
  consistent), then migrated one step at a time, each step and its new
  version number in one transaction: a crash leaves it at a step, never
  between two;
- a store written by a newer onwatch is refused (`NewerStore`), naming
  both versions, and left untouched.

`check_readable(conn, path)` refuses a newer store to the read-only CLI too.
A step is a function that takes the connection; steps only ever add.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

#: The version this onwatch writes. Bump it together with a new entry in STEPS.
SCHEMA_VERSION = 2


class NewerStore(Exception):
    """The store was written by a newer onwatch; the message names both versions."""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _v1_columns(conn: sqlite3.Connection) -> None:
    """Version 1 stores grew columns while that version was current (and before versions
    were counted): add whichever of them a store lacks. Tables not there yet are made
    whole by the schema afterwards."""
    incidents = (("policy", "TEXT"), ("escalation", "TEXT"),
                 ("kind", "TEXT NOT NULL DEFAULT 'outage'"), ("alert_key", "TEXT"),
                 ("labels", "TEXT NOT NULL DEFAULT '{}'"))
    outbox = (("short", "TEXT NOT NULL DEFAULT ''"),
              ("dead_channels", "TEXT NOT NULL DEFAULT '[]'"), ("link", "TEXT NOT NULL DEFAULT ''"))
    for table, wanted in (("incidents", incidents), ("outbox", outbox)):
        have = _columns(conn, table)
        for column, decl in wanted if have else ():
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _to_2(conn: sqlite3.Connection) -> None:
    """Every column of version 1's lifetime, and indexes for alert keys and retention
    (old resolved incidents, finished messages)."""
    _v1_columns(conn)
    if _columns(conn, "incidents"):
        conn.execute("CREATE INDEX IF NOT EXISTS incidents_alert_key ON incidents (alert_key)")
        conn.execute("CREATE INDEX IF NOT EXISTS incidents_resolved ON incidents (resolved_at) "
                     "WHERE state = 'resolved'")
    if _columns(conn, "outbox"):
        conn.execute("CREATE INDEX IF NOT EXISTS outbox_done ON outbox (status, delivered_at)")


#: STEPS[v] takes a store from version v to v + 1 (version 0 -> 1 is the repair of
#: stores made before versions were recorded, which all say 1).
STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _v1_columns, 1: _to_2}


def version(conn: sqlite3.Connection) -> int:
    """The recorded version; 0 for an empty database."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 1


def refuse_newer(found: int, path: Path | str) -> None:
    if found > SCHEMA_VERSION:
        from agent import version as onwatch_version

        raise NewerStore(
            f"{path} was written by a newer onwatch (store schema version {found}); this "
            f"onwatch ({onwatch_version()}) reads schema versions up to {SCHEMA_VERSION}. "
            "Upgrade onwatch, or restore a backup made by this version.")


def check_readable(conn: sqlite3.Connection, path: Path) -> None:
    refuse_newer(version(conn), path)


def prepare(conn: sqlite3.Connection, path: Path, schema: str) -> None:
    found = version(conn)
    refuse_newer(found, path)
    if found == 0 and not _has_tables(conn):
        # Only an empty file can switch auto-vacuum without a full VACUUM.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.executescript(schema)
        _set_version(conn, SCHEMA_VERSION)
        return
    if found < SCHEMA_VERSION:
        keep_copy(conn, path.with_name(f"{path.name}.v{found}.bak"))
    for step in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            STEPS[step](conn)
            _set_version(conn, step + 1)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    conn.executescript(schema)  # CREATE ... IF NOT EXISTS: nothing to do once migrated


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone() is not None


def _set_version(conn: sqlite3.Connection, v: int) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) "
                 "DO UPDATE SET value = excluded.value", (str(v),))


def keep_copy(conn: sqlite3.Connection, dest: Path) -> None:
    """A consistent copy of the open database at `dest` (an older copy is kept, not replaced)."""
    if dest.exists():
        return
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    target = sqlite3.connect(tmp)
    try:
        conn.backup(target)
    finally:
        target.close()
    tmp.rename(dest)
