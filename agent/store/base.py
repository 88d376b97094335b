"""The store interface: what the engine, outbox, API, CLI, reports and pages may ask of it.

Two stores implement `Store`: SQLite (agent/store/sqlite.py, one file in the state
directory, the embedded default) and PostgreSQL (agent/store/pg.py, several onwatch
instances on one database, one of them leading). `open_store(cfg)` picks one from
`[agent] store`: unset means SQLite in `state_dir`, a `postgresql://` URL means
PostgreSQL. Both keep the same contract:

- one transaction per transition (`with store.tx():`): an incident, its escalation
  state, its timeline entries and its outbox messages are stored together or not at all;
- outbox before send: a message is a row before anything is sent;
- `errors`: the exception types that mean "the database refused" (full disk, server
  gone); callers catch exactly these and keep what they could not write in memory;
- retention (`prune`), schema versions and forward-only migrations.

SQL is written once, SQLite's dialect with `?` parameters, run through `db`
(the PostgreSQL store translates parameters and keeps rows addressable by name and
position, as `sqlite3.Row` is). Table definitions are also written once in SQLite's
dialect: `create_tables` makes them on either store (agent/store/pgsql.py translates).

`Fenced` is raised by a store whose instance is no longer the leader: that write or
send must not happen at all (not be kept for later, as a refused write is).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.store.records import Action, OutboxMessage

if TYPE_CHECKING:
    from agent.config import Config
    from agent.incidents import Incident, TimelineEntry
    from agent.store.upkeep import Pruned
    from agent.vocab import IncidentKind


class StoreError(Exception):
    """The state directory or database cannot be used; the message names it."""


class Fenced(Exception):
    """This instance lost leadership: another one took over, nothing may be written or sent."""


class Cursor(Protocol):
    """What a statement returns (sqlite3.Cursor's shape; rows by name and by position)."""

    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    """Statements in SQLite's dialect with `?` parameters, on either store."""

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, seq: Iterable[Sequence[Any]], /) -> Any: ...


class Store(Protocol):
    #: Where the store is, for messages: a file path, or the redacted URL.
    path: Path | str
    #: The exception types meaning "the database refused this" (kept in memory, retried).
    errors: tuple[type[Exception], ...]

    @property
    def db(self) -> Db: ...
    def close(self) -> None: ...
    def tx(self) -> AbstractContextManager[None]: ...
    def create_tables(self, schema: str) -> None: ...
    def touch(self) -> None: ...
    def prune(self, cutoff: float) -> Pruned: ...
    def vacuum(self) -> int: ...
    def backup(self, dest: Path) -> None: ...
    def fence(self) -> None: ...
    def shared_secret(self, name: str, local: bytes) -> bytes: ...
    # incidents
    def next_incident_id(self) -> int: ...
    def save_incident(self, inc: Incident) -> None: ...
    def save_escalation(self, incident_id: int, state: Mapping[str, Any] | None) -> None: ...
    def escalation(self, incident_id: int) -> dict[str, Any] | None: ...
    def latest_incident(self, check: str, kind: IncidentKind = ...) -> Incident | None: ...
    def latest_by_key(self, key: str) -> Incident | None: ...
    def append(self, incident_id: int, entries: Sequence[TimelineEntry]) -> None: ...
    def incident(self, incident_id: int) -> Incident | None: ...
    def open_incidents(self) -> list[Incident]: ...
    def incidents(self, *, open_only: bool = False, limit: int = 50) -> list[Incident]: ...
    def incidents_between(self, since: float, until: float) -> list[Incident]: ...
    def timeline(self, incident_id: int) -> list[TimelineEntry]: ...
    # outbox
    def enqueue(self, msg: OutboxMessage) -> None: ...
    def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]: ...
    def next_due_at(self) -> float | None: ...
    def outbox_counts(self) -> dict[str, int]: ...
    def update_message(self, msg_id: str, *, status: str, attempts: int,
                       next_attempt_at: float, delivered_at: float | None,
                       last_error: str | None, dead_channels: str = "[]") -> None: ...
    def postpone(self, msg_id: str, until: float) -> None: ...
    def oldest_due_created_at(self) -> float | None: ...
    def messages(self, incident_id: int) -> list[OutboxMessage]: ...
    # prevention actions
    def add_action(self, incident_id: int, *, text: str, owner: str, at: float,
                   by: str) -> int: ...
    def finish_action(self, action_id: int, *, at: float, by: str) -> bool: ...
    def actions(self, *, incident_id: int | None = None,
                open_only: bool = False) -> list[Action]: ...
    # maintenance windows opened at run time
    def add_maintenance(self, *, checks: Sequence[str], tags: Sequence[str], start: float,
                        end: float, reason: str, by: str) -> int: ...
    def maintenance(self, now: float) -> list[dict[str, Any]]: ...
    def end_maintenance(self, window_id: int, now: float) -> bool: ...


_URL_PASSWORD = re.compile(r"(?P<head>^[a-z][a-z0-9+.-]*://[^/?#@:]*:)[^/?#@]*@", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact(dsn: str) -> str:
    """`dsn` with its password replaced by `***`, in URL and in key=value form."""
    out = _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", dsn)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + "***", out)


def is_postgresql(dsn: str | None) -> bool:
    return dsn is not None and dsn.split("://", 1)[0].lower() in ("postgresql", "postgres")


def open_store(cfg: Config, *, readonly: bool = False) -> Store:
    """The configured store, opened (created or migrated forward unless `readonly`)."""
    if cfg.agent.store is not None:
        from agent.store.pg import PgStore

        return PgStore.open(cfg.agent.store, readonly=readonly, name=cfg.agent.instance)
    from agent.store.sqlite import SqliteStore

    return SqliteStore.open(cfg.agent.state_dir, readonly=readonly)
