"""`onwatch migrate --to postgresql://…`: move a stopped agent's SQLite store to PostgreSQL.

The source is the SQLite store of the config's `state_dir`; the target an
empty PostgreSQL database (the schema is made there). The agent must be
stopped: the command takes the state directory's lock (agent/store/lock.py)
for the whole copy, so an agent cannot start meanwhile either, and refuses
when a running agent holds it. Every table is copied in one transaction
(see "How" below), then the rows are counted on both sides; any
difference is an error naming the table. The SQLite file is never changed.

How: every table of the SQLite file -- the main ones and those other modules
made with `create_tables` (status page, baselines, sign-in, relays) -- as
SQLite itself recorded it in `sqlite_master`, is made in PostgreSQL through
the translation the PostgreSQL store uses (agent/store/pgsql.py), and every
row copied in ONE transaction: a copy that fails half-way leaves the target as
empty as it was. Identity sequences then move past the copied ids, so that
the next action or notice gets a fresh one. The target must hold no incidents:
merging two histories would give two incidents the same number.

Afterwards: set `[agent] store` to the URL (README, "High availability").
Exit codes: 0 copied and verified, 1 refused or a mismatch, 2 a broken config.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agent import cli_common as common

if TYPE_CHECKING:
    from agent.store.pg import PgStore
    from agent.store.sqlite import SqliteStore

AddParser = Callable[..., argparse.ArgumentParser]

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


def cmd_migrate(args: argparse.Namespace) -> int:
    import psycopg

    from agent.store.base import StoreError
    from agent.store.dsn import is_postgresql, redact
    from agent.store.lock import LockHeld, StateLock
    from agent.store.pg import PgStore
    from agent.store.sqlite import SqliteStore

    cfg = common.load(args.config)
    if cfg is None:
        return common.EXIT_CONFIG
    if not is_postgresql(args.to):
        print(f"onwatch: --to must be a postgresql:// URL, got {redact(args.to)!r}",
              file=sys.stderr)
        return 64
    try:
        lock = StateLock.acquire(cfg.agent.state_dir)
    except LockHeld as exc:
        print(f"onwatch: {exc}; migrate copies a stopped agent's store", file=sys.stderr)
        return common.EXIT_FAIL
    try:
        source = SqliteStore.open(cfg.agent.state_dir, readonly=True)
    except StoreError as exc:
        lock.release()
        print(f"onwatch: {exc}", file=sys.stderr)
        return common.EXIT_FAIL
    try:
        target = PgStore.open(args.to, name="onwatch-migrate")
    except StoreError as exc:
        lock.release()
        source.close()
        # The store's message points at [agent] store; here the address is --to.
        text = str(exc).replace("check [agent] store", "check --to")
        print(f"onwatch: {text}; nothing was copied", file=sys.stderr)
        return common.EXIT_FAIL
    try:
        copied = copy_all(source, target)
        theirs, ours = counts(source, list(copied)), counts(target, list(copied))
    except (CopyError, psycopg.Error) as exc:
        print(f"onwatch: nothing was copied: {redact(str(exc)).strip()}", file=sys.stderr)
        return common.EXIT_FAIL
    finally:
        source.close()
        target.close()
        lock.release()
    wrong = {t: (theirs[t], ours[t]) for t in copied if theirs[t] != ours[t]}
    for table, n in copied.items():
        print(f"{table:<20} {n:>8} rows" + ("  MISMATCH" if table in wrong else ""))
    if wrong:
        print("onwatch: the copy does not match: " + ", ".join(
            f"{t} has {a} rows in SQLite but {b} in PostgreSQL" for t, (a, b) in wrong.items())
            + "; keep using the SQLite store and report this", file=sys.stderr)
        return common.EXIT_FAIL
    print(f"copied {source.path} to {redact(args.to)}, every count verified. Next: set "
          f'[agent] store = "{redact(args.to)}" (the password from ${{ENV}} or store_file) '
          "and start onwatch.")
    return common.EXIT_OK


COMMANDS = {"migrate": cmd_migrate}


def register(with_config: AddParser) -> None:
    sp = with_config("migrate", "copy a stopped agent's SQLite store into PostgreSQL and "
                                "verify the counts")
    sp.add_argument("--to", required=True, metavar="URL",
                    help="the target: postgresql://user[:password]@host/database (empty)")
