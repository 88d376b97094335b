"""The learned detection state of every check, in the store: one row per check.

`baseline_state` holds, per check, what its baselines have learned (the JSON
of `agent.detect.learned.save`, about 3 KB a signal, never more than
MAX_BYTES), the check settings it was learned under (`spec`, JSON) and when it
was written. Rows are replaced whole; a check that is no longer configured
loses its row at the next write. Nothing here interprets the JSON: whether a
row is still usable is the caller's decision (agent/learning.py).

Writes raise one of `store.errors` like every store write (a full disk, a locked
file); the caller keeps the state in memory and tries again later.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from agent.store.base import Db, Store

#: A row larger than this is not written (a check learning hundreds of observations).
MAX_BYTES = 256 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_state (
    check_name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    saved_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Row:
    check: str
    spec: str
    state: str
    saved_at: float


class BaselineStore:
    def __init__(self, store: Store) -> None:
        self._db: Db = store.db
        self._store = store
        store.create_tables(_SCHEMA)  # additive only, like the main schema

    def load(self) -> dict[str, Row]:
        rows = self._db.execute("SELECT check_name, spec, state, saved_at FROM baseline_state"
                                ).fetchall()
        return {r[0]: Row(r[0], r[1], r[2], float(r[3])) for r in rows}

    def save(self, rows: Sequence[Row], keep: Collection[str] | None = None) -> None:
        """Replace the rows given, and drop those of checks not in `keep` (None: drop
        nothing); one transaction."""
        with self._store.tx():
            self._db.executemany(
                "INSERT INTO baseline_state VALUES (?,?,?,?) ON CONFLICT (check_name) DO "
                "UPDATE SET spec = excluded.spec, state = excluded.state, "
                "saved_at = excluded.saved_at",
                [(r.check, r.spec, r.state, r.saved_at) for r in rows])
            if keep is None:
                return
            stored = [r[0] for r in self._db.execute("SELECT check_name FROM baseline_state")]
            gone = [(name,) for name in stored if name not in keep]
            self._db.executemany("DELETE FROM baseline_state WHERE check_name = ?", gone)

    def discard(self, check: str) -> None:
        self._db.execute("DELETE FROM baseline_state WHERE check_name = ?", (check,))
