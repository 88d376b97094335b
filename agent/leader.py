"""Leader and standby: several onwatch instances on one PostgreSQL store, one of them leading.

Leadership is a PostgreSQL advisory lock (`pg_try_advisory_lock(LOCK_KEY)`)
held on a dedicated connection of the leader's. Every instance runs this loop:

- a standby tries to take the lock every TICK_S;
- whoever takes it increments the fencing epoch (`onwatch_leader`, one row) in
  the same breath and leads with that epoch: the store checks it inside every
  state-changing transaction and before each send (agent/store/pg.py), so a
  leader that lost its lock can neither write a transition nor page once
  another instance took over -- whatever it still believes;
- the leader pings its lock connection every TICK_S. The connection carries
  `idle_session_timeout = LEASE_S` and TCP keepalives: a leader that stops
  pinging (SIGSTOP, a partition, a hung loop) loses its session, and with it
  the lock, after LEASE_S at most; one killed loses it at once. A standby then
  takes over within TICK_S: failover takes LEASE_S + TICK_S in the worst case
  (well under the 15 s asked), about TICK_S after `kill -9`.
- a leader whose lock connection broke keeps leading while the database
  cannot be reached at all (a PostgreSQL outage: nobody else can take over,
  so it goes on paging from memory, agent/pending.py, and /healthz says so);
  when the database answers again it takes the lock back at once, while a
  standby that saw the outage too waits REGAIN_S first: the writes kept in
  memory are the leader's to store. A leader whose connection alone was cut
  (the database answering at once) waits REGAIN_S instead, so that a standby
  takes over; if one did, it becomes a standby.

On becoming leader the daemon's `promote` reloads open incidents and their
escalation state from the store (the start-up path, `Engine.restore`), so the
planner pages whatever fell due during the failover and nothing already
paged. On losing it, `demote` drops the engine's in-memory incidents and
pending writes: the new leader owns them now.

The leader also LISTENs on the relay channel (agent/relay.py) on the same
connection and applies what standbys forwarded as soon as it is notified.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from agent.relay import CHANNEL, Relay, apply_due
from agent.store.base import Store
from agent.store.dsn import redact
from agent.store.pg import PgStore, connect_kwargs

if TYPE_CHECKING:
    from agent.config import Config
    from agent.engine import Engine
    from agent.metrics import Metrics

log = structlog.get_logger(__name__)

LOCK_KEY = 0x6F6E7762  # "onwb": any constant of our own, the same in every instance
TICK_S = 1.0
LEASE_S = 5.0
REGAIN_S = 5.0


class Leadership:
    def __init__(self, store: PgStore, instance: str, *,
                 promote: Callable[[], None], demote: Callable[[str], None],
                 relayed: Callable[[], None]) -> None:
        self.store = store
        self.instance = instance
        self._promote, self._demote, self._relayed = promote, demote, relayed
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.leading = False
        #: The lock connection broke while leading: leading on, unconfirmed (an outage).
        self.unconfirmed_since: float | None = None
        self._not_before = 0.0
        self._outage = False
        store.shared = True

    @property
    def role(self) -> str:
        return "leader" if self.leading else "standby"

    async def run(self) -> None:
        """Until cancelled: hold or seek the lock, once per TICK_S (or at a notification)."""
        try:
            while True:
                await self.step()
                await self._wait()
        finally:
            if self._conn is not None:
                await self._conn.close()

    async def step(self) -> None:
        try:
            conn = await self._connection()
            if self.leading and self.unconfirmed_since is None:
                await conn.execute("SELECT 1")  # the ping that keeps the session (the lease)
                self._relayed()  # also what a NOTIFY missed while reconnecting announced
                return
            if time.monotonic() < self._not_before:
                return
            await self._try_lock(conn)
        except psycopg.Error as exc:
            await self._lost(exc)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.store.url, **connect_kwargs(f"onwatch-lock {self.instance}"))
        except psycopg.Error:
            self._outage = True  # the database cannot be reached at all
            raise
        try:
            await conn.execute(f"SET idle_session_timeout = {int(LEASE_S * 1000)}")
        except psycopg.errors.UndefinedObject:  # before PostgreSQL 14: no lease by time
            log.error("leadership_without_lease", instance=self.instance,
                      note="PostgreSQL 14 or newer is needed for a paused or cut-off leader "
                           "to lose its lock; a killed one still does")
        await conn.execute(f"LISTEN {CHANNEL}")
        self._conn = conn
        # Who takes the lock first when it is free again: after an outage of the database,
        # the leader that kept paging (its writes wait in memory, and only it can store
        # them); after its connection alone was cut, a standby (it may be the leader's
        # own network or host that is failing).
        if self.leading != self._outage:  # (leading, cut alone) or (standby, outage)
            self._not_before = time.monotonic() + REGAIN_S
        self._outage = False
        return conn

    async def _try_lock(self, conn: psycopg.AsyncConnection[Any]) -> None:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        row = await cur.fetchone()
        if not (row and row[0]):
            if self.leading:  # another instance leads now: this one stands by
                self.unconfirmed_since = None
                self._step_down("another instance holds the lock")
            return
        cur = await conn.execute(
            "UPDATE onwatch_leader SET epoch = epoch + 1, holder = %s, since = %s WHERE id = 1 "
            "RETURNING epoch", (self.instance, time.time()))
        row = await cur.fetchone()
        assert row is not None  # the row is made with the schema
        regained = self.leading
        self.store.epoch, self.leading, self.unconfirmed_since = int(row[0]), True, None
        log.warning("leadership_regained" if regained else "leadership_taken",
                    instance=self.instance, epoch=self.store.epoch)
        if not regained:
            self._promote()
        self._relayed()

    async def _lost(self, exc: psycopg.Error) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self.leading and self.unconfirmed_since is None:
            self.unconfirmed_since = time.monotonic()
            log.error("leadership_unconfirmed", instance=self.instance,
                      error=redact(str(exc)).strip(),
                      note="the lock connection broke: leading on, paging from memory while "
                           "the database cannot be reached; fenced once another instance leads")
        elif not self.leading:
            log.debug("standby_cannot_reach_store", error=redact(str(exc)).strip())

    def fenced(self, reason: str) -> None:
        """The store refused a write or a send: another instance leads (from the engine)."""
        if self.leading:
            self.unconfirmed_since = None
            self._not_before = time.monotonic() + REGAIN_S
            self._step_down(reason)

    def _step_down(self, reason: str) -> None:
        self.leading, self.store.epoch = False, None
        log.warning("leadership_lost", instance=self.instance, reason=reason)
        self._demote(reason)

    async def _wait(self) -> None:
        """TICK_S, cut short by a relay notification (the leader applies it at once)."""
        conn = self._conn
        if conn is None or not self.leading:
            await asyncio.sleep(TICK_S)
            return
        try:
            async for _ in conn.notifies(timeout=TICK_S, stop_after=1):
                self._relayed()
        except psycopg.Error as exc:
            await self._lost(exc)


async def start(config: Config, store: Store, engine: Engine, metrics: Metrics
                ) -> Leadership | None:
    """On a PostgreSQL store: the engine stands by until this instance takes the lock
    (tried once now, so that a lone instance leads from its first check). None on SQLite."""
    if not isinstance(store, PgStore):
        return None
    engine.relay, engine.leading = Relay(store, config.agent.instance), False
    metrics.leader.set(0)

    def promote() -> None:
        engine.lead(True)
        metrics.leader.set(1)
        engine.outbox_wakeup.set()  # what the last leader left due goes out now

    def demote(_reason: str) -> None:
        engine.lead(False)
        metrics.leader.set(0)

    def relayed() -> None:
        try:
            apply_due(engine, store)
        except store.errors as exc:  # the next notification or tick tries again
            log.warning("relay_apply_failed", error=redact(str(exc)).strip())

    lead = Leadership(store, config.agent.instance, promote=promote, demote=demote,
                      relayed=relayed)
    engine.on_fenced = lead.fenced
    await lead.step()
    return lead
