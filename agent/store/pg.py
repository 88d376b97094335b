"""PostgreSQL store: the same contract as the SQLite one, for several instances on one database.

Selected by `[agent] store = "postgresql://…"` (agent/store/base.py). psycopg 3
with a psycopg_pool connection pool: the pool replaces a connection the server
cut (a restart, `pg_terminate_backend`) without the agent noticing more than
the one statement that failed. Statements are the shared ones of
agent/store/queries.py (SQLite's dialect, translated by agent/store/pgsql.py);
the calls are synchronous on the event loop like SQLite's: a transition is a
handful of statements of well under a millisecond each on a local server, and
one synchronous interface keeps "one transaction per transition" exactly the
same code path on both stores.

- `tx()`: one transaction on one connection; every statement inside it runs
  there. When this instance leads (`epoch` set, agent/leader.py), the
  transaction first reads the fencing epoch under a share lock and raises
  `Fenced` if another instance took over since: a leader that lost its lock
  (paused, partitioned) can never write a transition afterwards.
- `fence()`: the same check just before each send (the outbox calls it).
- Outside `tx()` a statement runs alone (autocommit) on a pooled connection.
- Schema: created or migrated under a transaction-scoped advisory lock (two
  instances starting together do not race), its version in `onwatch_schema`;
  a store written by a newer onwatch is refused, naming both versions.
- Errors: `errors` is `(psycopg.Error,)`; every message that leaves this
  module carries the URL with its password redacted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from agent.store import migrations, sqlite, upkeep
from agent.store.base import Db, Fenced, StoreError
from agent.store.dsn import redact
from agent.store.pgsql import Result, ddl, params
from agent.store.queries import SqlStore

# The pool's threads log every reconnection attempt; the store says it once, with the
# redacted URL (store_write_failed, leadership_unconfirmed), from the event loop's thread.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

#: Waiting for a pooled connection, and for a new one, before the store counts as down.
CONNECT_TIMEOUT_S = 3
#: While the server is unreachable, how often a statement may wait for it again.
RETRY_S = 5.0
#: No statement of the agent's takes long; one that does is a server in trouble.
STATEMENT_TIMEOUT_MS = 5000
#: Key of the advisory lock that serialises schema changes (any constant of our own).
SCHEMA_LOCK = 0x6F6E7761  # "onwa"
#: PostgreSQL stores begin at this schema version; PG_STEPS[v] takes one from v to v + 1.
FIRST_VERSION = 2
PG_STEPS: dict[int, str] = {}
_OWN_SCHEMA = """
CREATE TABLE IF NOT EXISTS onwatch_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS onwatch_leader (
    id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, holder TEXT NOT NULL, since REAL NOT NULL
);
"""


def connect_kwargs(name: str) -> dict[str, Any]:
    """Connection settings every onwatch connection uses (`name`: application_name)."""
    return {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S, "application_name": name,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            # A peer that vanished (a partition) is noticed in seconds, not hours: idle, by
            # keepalives; with a statement sent and not acknowledged, after 5 s (the calls
            # are synchronous: without it the event loop would wait for the kernel's
            # retransmissions, a quarter of an hour).
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
            "keepalives_count": 3, "tcp_user_timeout": 5000}


class _Db:
    """`Db` on PostgreSQL: inside `tx()` on its connection, else alone on a pooled one."""

    def __init__(self, store: PgStore) -> None:
        self._store = store

    def execute(self, sql: str, args: Sequence[Any] | Mapping[str, Any] = (), /) -> Result:
        conn = self._store.tx_conn
        if conn is not None:
            return Result.of(conn.execute(params(sql), args))
        with self._store.connection() as conn:
            return Result.of(conn.execute(params(sql), args))

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]], /) -> Result:
        rows = list(seq)
        if not rows:
            return Result([], 0)
        conn = self._store.tx_conn
        if conn is not None:
            with conn.cursor() as cur:
                cur.executemany(params(sql), rows)
                return Result([], cur.rowcount)
        with self._store.connection() as conn, conn.cursor() as cur:
            cur.executemany(params(sql), rows)
            return Result([], cur.rowcount)


class PgStore(SqlStore):
    """The shared store (agent/store/base.py's contract, this module's doc)."""

    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, pool: ConnectionPool, url: str) -> None:
        self.pool = pool
        self.path: Path | str = redact(url)
        self.url = url
        self.tx_conn: psycopg.Connection[Any] | None = None
        self._db = _Db(self)
        #: The fencing epoch this instance leads with; None: it does not lead (or no HA).
        self.epoch: int | None = None
        #: True once leadership runs (agent/leader.py): then only the leader may send.
        self.shared = False
        #: Since when (monotonic) the server cannot be reached; None while it can.
        self.down_since: float | None = None
        self._retry_at = 0.0

    @classmethod
    def open(cls, url: str, *, readonly: bool = False, name: str = "onwatch") -> PgStore:
        where = redact(url)
        try:
            with psycopg.connect(url, **connect_kwargs(name)) as conn:
                prepare(conn, where, readonly=readonly)
            pool = ConnectionPool(url, min_size=1, max_size=4, kwargs=connect_kwargs(name),
                                  timeout=CONNECT_TIMEOUT_S, reconnect_timeout=86400.0,
                                  open=False, name=name)
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_S + 1)
        except psycopg.Error as exc:
            why = " ".join(redact(str(exc)).split())  # one line, whatever libpq wrote
            raise StoreError(f"the PostgreSQL store {where} cannot be used: {why}; check "
                             "[agent] store and that the server is running") from None
        except migrations.NewerStore as exc:
            raise StoreError(str(exc)) from None
        return cls(pool, url)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; while the server is unreachable, a refusal at once.

        Every call waits for the server otherwise (up to CONNECT_TIMEOUT_S, on the event
        loop): during an outage the engine retries its writes every second, and each
        wait would stall the checks. So after a connection failure the store refuses at
        once for RETRY_S, unless the pool (reconnecting in its own threads) has a
        connection again; then it tries once more, waiting at most a second."""
        now = time.monotonic()
        if self.down_since is not None and now < self._retry_at and not self._pooled():
            raise psycopg.OperationalError(
                f"the PostgreSQL store {self.path} is unreachable (for "
                f"{now - self.down_since:.0f} s); retrying")
        try:
            with self.pool.connection(timeout=1.0 if self.down_since else None) as conn:
                yield conn
        except psycopg.OperationalError:
            self.down_since = self.down_since or time.monotonic()
            self._retry_at = time.monotonic() + RETRY_S
            raise
        self.down_since = None

    def _pooled(self) -> bool:
        return bool(self.pool.get_stats().get("pool_available", 0))

    @property
    def db(self) -> Db:
        return self._db

    @contextmanager
    def tx(self) -> Iterator[None]:
        if self.tx_conn is not None:
            raise RuntimeError("store.tx() does not nest")
        with self.connection() as conn, conn.transaction():
            self.tx_conn = conn
            try:
                self._check_epoch(conn)
                yield
            finally:
                self.tx_conn = None

    def fence(self) -> None:
        """Raise Fenced unless this instance may send now (the leader, still the leader)."""
        if not self.shared:
            return
        if self.epoch is None:
            raise Fenced("this instance is a standby")
        with self.connection() as conn:
            self._check_epoch(conn)

    def _check_epoch(self, conn: psycopg.Connection[Any]) -> None:
        """In a leader's transaction: the epoch is still ours (a standby's writes are not
        transitions -- relayed actions, learned baselines -- and are not fenced)."""
        if self.epoch is None:
            return
        row = conn.execute("SELECT epoch FROM onwatch_leader WHERE id = 1 FOR SHARE").fetchone()
        if row is None or int(row[0]) != self.epoch:
            held, self.epoch = self.epoch, None
            raise Fenced(f"another instance leads now (epoch {row and row[0]}, ours {held})")

    def create_tables(self, schema: str) -> None:
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for stmt in ddl(schema):
                conn.execute(stmt)

    def shared_secret(self, name: str, local: bytes) -> bytes:
        """The secret every instance on this store signs with (the link key): the first
        instance's, so that a link made by one is honoured by all."""
        self.create_tables("CREATE TABLE IF NOT EXISTS onwatch_secrets "
                           "(name TEXT PRIMARY KEY, value BLOB NOT NULL)")
        with self.connection() as conn:
            conn.execute("INSERT INTO onwatch_secrets VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (name, local))
            row = conn.execute("SELECT value FROM onwatch_secrets WHERE name = %s",
                               (name,)).fetchone()
        assert row is not None  # inserted just now if it was not there
        return bytes(row[0])

    def touch(self) -> None:
        """A write that changes nothing: raises psycopg.Error when the store cannot be written."""
        with self.connection() as conn:
            conn.execute("UPDATE onwatch_schema SET version = version")

    def prune(self, cutoff: float, *, batch: int = upkeep.BATCH) -> upkeep.Pruned:
        return upkeep.prune(self, cutoff, batch=batch)

    def vacuum(self) -> int:
        return 0  # PostgreSQL's autovacuum gives the space back

    def backup(self, dest: Path) -> None:
        raise StoreError(f"`onwatch backup` copies a SQLite store; this store is PostgreSQL "
                         f"({self.path}): back it up with pg_dump")


def version(conn: psycopg.Connection[Any]) -> int:
    """The recorded schema version; 0 for a database without onwatch's tables."""
    if conn.execute("SELECT to_regclass('onwatch_schema')").fetchone() == (None,):
        return 0
    row = conn.execute("SELECT max(version) FROM onwatch_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def prepare(conn: psycopg.Connection[Any], where: str, *, readonly: bool = False) -> None:
    """Create the schema, or migrate it forward; refuse a newer one (`NewerStore`)."""
    with conn.transaction():
        found = version(conn)
        if found > migrations.SCHEMA_VERSION:
            migrations.refuse_newer(found, where)
        if readonly:
            if found == 0:
                raise StoreError(f"no onwatch store in {where}: has `onwatch run` been started "
                                 "with this config?")
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        found = version(conn)  # another instance may have made it meanwhile
        if found == 0:
            for stmt in ddl(sqlite.SCHEMA + _OWN_SCHEMA):
                conn.execute(stmt)
            conn.execute("INSERT INTO onwatch_schema VALUES (%s)", (migrations.SCHEMA_VERSION,))
            conn.execute("INSERT INTO onwatch_leader VALUES (1, 0, '', 0) ON CONFLICT DO NOTHING")
            return
        for step in range(found, migrations.SCHEMA_VERSION):
            conn.execute(PG_STEPS[step])
            conn.execute("UPDATE onwatch_schema SET version = %s", (step + 1,))
