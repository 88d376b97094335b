"""Copy a SQLite store into an empty PostgreSQL database, whole, and prove it by counting.

`copy_all(source, target)` takes every table of the SQLite file -- the main
ones (incidents, timeline, outbox, actions, maintenance) and those other
modules made with `create_tables` (status page, baselines, sign-in, relays) --
as SQLite itself recorded them in `sqlite_master`, makes each in PostgreSQL
through the same translation the PostgreSQL store uses (agent/store/pgsql.py),
and copies every row in ONE transaction: a copy that fails half-way leaves the
target as empty as it was. Identity sequences are then moved past the copied
ids, so that the next action or notice gets a fresh one.

`counts(...)` on both sides is the verification (`onwatch migrate` compares
them and fails on any difference). The target must hold no incidents yet:
merging two histories would give two incidents the same number.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

from agent.store.pg import PgStore
from agent.store.sqlite import SqliteStore

#: SQLite's own bookkeeping, and the version row the target keeps in its own table.
SKIPPED = frozenset({"sqlite_sequence", "meta"})
BATCH = 1000


class CopyError(Exception):
    """The copy cannot be made; the message says why and what to do."""


def tables(source: SqliteStore) -> dict[str, str]:
    """name -> CREATE statement (IF NOT EXISTS) of every table of the SQLite store."""
    rows = source.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                               "ORDER BY rootpage").fetchall()
    return {name: re.sub(r"^CREATE\s+TABLE\s+(?!IF\s+NOT\s+EXISTS)", "CREATE TABLE IF NOT "
                         "EXISTS ", sql, count=1, flags=re.I)
            for name, sql in rows if name not in SKIPPED and not name.startswith("sqlite_")}


def counts(store: SqliteStore | PgStore, names: list[str]) -> dict[str, int]:
    return {name: int(store.db.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0])
            for name in names}


def _columns(source: SqliteStore, table: str) -> list[str]:
    return [r[1] for r in source.conn.execute(f'PRAGMA table_info("{table}")')]


def _batches(source: SqliteStore, table: str, cols: list[str]) -> Iterator[list[Any]]:
    names = ", ".join(f'"{c}"' for c in cols)
    cur: sqlite3.Cursor = source.conn.execute(f'SELECT {names} FROM "{table}"')
    while rows := cur.fetchmany(BATCH):
        yield [tuple(r) for r in rows]


def copy_all(source: SqliteStore, target: PgStore) -> dict[str, int]:
    """Copy every table; returns the rows copied per table."""
    found = tables(source)
    if int(target.db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]):
        raise CopyError(f"{target.path} already holds incidents; migrate into an empty "
                        "database (a new one, or drop onwatch's tables first)")
    for sql in found.values():  # the main tables exist already: IF NOT EXISTS
        target.create_tables(sql)
    copied: dict[str, int] = {}
    with target.tx():
        for table in found:
            cols = _columns(source, table)
            names = ", ".join(f'"{c}"' for c in cols)
            marks = ", ".join("?" * len(cols))
            target.db.execute(f'DELETE FROM "{table}"')  # empty, or made empty by the schema
            copied[table] = 0
            for rows in _batches(source, table, cols):
                target.db.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
                copied[table] += len(rows)
        _move_sequences(target, list(found))
    return copied


def _move_sequences(target: PgStore, names: list[str]) -> None:
    """Identity columns continue after the copied ids (an explicit id does not move them)."""
    rows = target.db.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE "
        "is_identity = 'YES' AND table_schema = current_schema()").fetchall()
    for table, column in rows:
        if table in names:
            target.db.execute(
                f"SELECT setval(pg_get_serial_sequence(?, ?), "
                f'(SELECT COALESCE(MAX("{column}"), 0) + 1 FROM "{table}"), false)',
                (table, column))

