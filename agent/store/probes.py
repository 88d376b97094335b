"""Remote probes in the store: who may send results, and what was last accepted.

`probes` has one row per probe name: the id of its current key (keys are
derived from the central's secret, agent/probe_wire.py, so no key material is
stored), when it was added, when it was revoked (a revoked probe's requests
are refused until `onwatch probe add` issues a new key), the last batch
sequence number accepted (replay protection: a batch at or below it changes
nothing) and when the last batch arrived.

Writes are their own small transactions; the CLI and the agent share the file
(SQLite's locking), as they do for every other table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.store.base import Db, Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS probes (
    name TEXT PRIMARY KEY,
    key_id INTEGER NOT NULL,
    added_at REAL NOT NULL,
    revoked_at REAL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_seen REAL
);
"""


@dataclass(frozen=True, slots=True)
class ProbeRow:
    name: str
    key_id: int
    added_at: float
    revoked_at: float | None
    last_seq: int
    last_seen: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ProbeStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._db: Db = store.db
        store.create_tables(_SCHEMA)  # additive only, like the main schema

    def add(self, name: str, now: float) -> int:
        """Issue a new key id for `name` (a new probe, or a new key for a revoked or
        compromised one: the old key stops working at once). Returns the key id."""
        with self._store.tx():
            row = self.get(name)
            key_id = 1 if row is None else row.key_id + 1
            self._db.execute(
                "INSERT INTO probes (name, key_id, added_at) VALUES (?,?,?) ON CONFLICT (name) "
                "DO UPDATE SET key_id = excluded.key_id, added_at = excluded.added_at, "
                "revoked_at = NULL", (name, key_id, now))
        return key_id

    def revoke(self, name: str, now: float) -> bool:
        with self._store.tx():
            cur = self._db.execute("UPDATE probes SET revoked_at = ? WHERE name = ? AND "
                                   "revoked_at IS NULL", (now, name))
        return bool(cur.rowcount > 0)

    def get(self, name: str) -> ProbeRow | None:
        r = self._db.execute("SELECT name, key_id, added_at, revoked_at, last_seq, last_seen "
                             "FROM probes WHERE name = ?", (name,)).fetchone()
        return None if r is None else _row(r)

    def all(self) -> list[ProbeRow]:
        rows = self._db.execute("SELECT name, key_id, added_at, revoked_at, last_seq, "
                                "last_seen FROM probes ORDER BY name").fetchall()
        return [_row(r) for r in rows]

    def accept(self, name: str, seq: int, now: float) -> bool:
        """Record batch `seq` of `name` as accepted; False when it is not newer than the
        last one accepted (a replay or a retry: it must change nothing)."""
        with self._store.tx():
            cur = self._db.execute("UPDATE probes SET last_seq = ?, last_seen = ? WHERE "
                                   "name = ? AND last_seq < ? AND revoked_at IS NULL",
                                   (seq, now, name, seq))
        return bool(cur.rowcount > 0)


def _row(r: Any) -> ProbeRow:
    def opt(v: Any) -> float | None:
        return None if v is None else float(v)
    return ProbeRow(str(r[0]), int(r[1]), float(r[2]), opt(r[3]), int(r[4]), opt(r[5]))
