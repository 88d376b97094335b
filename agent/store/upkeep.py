"""The store over years: retention in small batches, and space given back.

`prune(store, cutoff)` deletes what finished before `cutoff` (a wall-clock
time the caller computes as now minus `[agent] retention`):

- resolved incidents resolved before it, with their timelines and their
  finished (delivered or failed) outbox messages -- never an open one, and
  never one that still has a message due (it is kept until that is sent);
- finished outbox messages of no incident (storm bundles, tests) older
  than it;
- maintenance windows that ended before it.

It works in batches of `batch` incidents, each batch one short transaction
(the agent's writes are never held up for long), and at most `max_batches`
per call; what is left is pruned by the next call. The same
statements run on both stores. Then, on SQLite, `PRAGMA incremental_vacuum`
hands the freed pages back to the file system, so that a store whose traffic
is steady stops growing (new stores are made with auto_vacuum=INCREMENTAL; see
migrations.py); PostgreSQL's autovacuum does that part there.

`run(...)` is the agent's loop: a pass at start and every `every` seconds.
Pure of clocks: the time comes from the `clock` argument (tests pass a fake).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog

if TYPE_CHECKING:
    from agent.store.base import Db

log = structlog.get_logger(__name__)
T = TypeVar("T")

BATCH = 200
MAX_BATCHES = 50
#: Pages handed back to the file system per pass (4 KiB each: up to 40 MiB).
VACUUM_PAGES = 10_000
DAY = 86400.0


@dataclass(frozen=True)
class Pruned:
    incidents: int = 0
    messages: int = 0
    windows: int = 0
    #: True when the batch limit stopped the pass before everything old was gone.
    more: bool = False

    def __bool__(self) -> bool:
        return bool(self.incidents or self.messages or self.windows)


class _Sql(Protocol):
    """What pruning needs of a store: statements and transactions (either store)."""

    @property
    def db(self) -> Db: ...
    def tx(self) -> AbstractContextManager[None]: ...


def _tx(store: _Sql, work: Callable[[], T]) -> T:
    with store.tx():
        return work()


def _old_incidents(db: Db, cutoff: float, batch: int) -> list[int]:
    rows = db.execute(
        "SELECT id FROM incidents AS i WHERE state = 'resolved' AND resolved_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM outbox WHERE incident_id = i.id AND status = 'due') "
        "ORDER BY resolved_at LIMIT ?", (cutoff, batch)).fetchall()
    return [int(r[0]) for r in rows]


def _delete_incidents(db: Db, ids: list[int]) -> tuple[int, int]:
    marks = ",".join("?" * len(ids))
    db.execute(f"DELETE FROM timeline WHERE incident_id IN ({marks})", ids)
    db.execute(f"DELETE FROM actions WHERE incident_id IN ({marks})", ids)
    messages = int(db.execute(f"DELETE FROM outbox WHERE incident_id IN ({marks})",
                              ids).rowcount)
    incidents = int(db.execute(f"DELETE FROM incidents WHERE id IN ({marks})", ids).rowcount)
    return incidents, messages


def prune(store: _Sql, cutoff: float, *, batch: int = BATCH,
          max_batches: int = MAX_BATCHES) -> Pruned:
    db = store.db
    incidents = messages = 0
    more = False
    for n in range(max_batches):
        ids = _old_incidents(db, cutoff, batch)
        if not ids:
            break
        done, sent = _tx(store, functools.partial(_delete_incidents, db, ids))
        incidents += done
        messages += sent
        more = n == max_batches - 1 and len(ids) == batch
    messages += _tx(store, lambda: int(db.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE incident_id IS NULL "
        "AND status IN ('delivered', 'failed') AND COALESCE(delivered_at, created_at) < ? "
        "LIMIT ?)", (cutoff, batch * max_batches)).rowcount))
    windows = _tx(store, lambda: int(db.execute('DELETE FROM maintenance WHERE "end" < ?',
                                                (cutoff,)).rowcount))
    return Pruned(incidents, messages, windows, more)


def vacuum(conn: sqlite3.Connection, pages: int = VACUUM_PAGES) -> int:
    """Give up to `pages` free pages back to the file system; returns how many were free."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    if free:
        conn.execute(f"PRAGMA incremental_vacuum({int(pages)})")
        # The freed pages leave the main file at a checkpoint; TRUNCATE also empties
        # the write-ahead log, which otherwise keeps its largest size for ever.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return free


class _Store(Protocol):
    errors: tuple[type[Exception], ...]

    def prune(self, cutoff: float) -> Pruned: ...
    def vacuum(self) -> int: ...


async def run(store: _Store, retention: float, clock: Callable[[], float], *,
              every: float = 3600.0) -> None:
    """Prune and vacuum at start, then every `every` seconds, until cancelled."""
    while True:
        try:
            pruned = store.prune(clock() - retention)
            freed = store.vacuum()
        except store.errors as exc:  # a full disk, a locked file: the next pass retries
            log.warning("store_prune_failed", error=str(exc))
        else:
            if pruned or freed:
                log.info("store_pruned", incidents=pruned.incidents, messages=pruned.messages,
                         windows=pruned.windows, free_pages=freed,
                         retention_days=round(retention / DAY, 1))
            if pruned.more:  # more is left: continue soon, in small bites
                await asyncio.sleep(1.0)
                continue
        await asyncio.sleep(every)
