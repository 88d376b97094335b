"""People's actions on a standby: forwarded through the store to the leader, applied there.

The engine is the only writer of incidents, and only the leader's engine
writes (agent/leader.py). An acknowledgement link, an API call, a reply or a
console form that reaches a standby is therefore not applied there: the
engine's action methods are `@relayable`, and on a standby they call
`Relay.forward`, which

1. stores the call as a `relayed` row (the method's name and its arguments,
   JSON) and sends `NOTIFY onwatch_relay` in the same transaction;
2. waits for the leader to mark the row done (it LISTENs and applies due rows
   at once, through its own engine: `apply_due`), at most WAIT_S;
3. returns what the leader's call returned (the incident as stored now, or the
   new maintenance window's id), or raises the leader's refusal (`Conflict`,
   `NotFound`, `Invalid`) with its message.

The standby waits synchronously (a short poll): its event loop runs only its
warm checks meanwhile, and the person gets the leader's real answer. When no
leader answers in WAIT_S, the row stays due (the next leader applies it) and
the caller hears so (`Conflict`).

Rows are kept a day for the record, then pruned by the leader.

`Leading` is the engine's side of leadership (a part of the engine):
`lead(True)` reloads open incidents and their escalation state from the store
(the start-up path, `Engine.restore`) and acts on what the runner saw while
standing by; `lead(False)` drops them with the writes still pending in memory
(the new leader stored or owns all of it). `_flush` writes what is pending and
turns a `Fenced` refusal (another instance leads) into standing by -- never
into a page sent from memory, as a refused write is. `read_or_none` lets a
read the store refuses (a database down) find nothing, so that detection and
paging go on from memory.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

import structlog

from agent.errors import ActionError, Conflict, Invalid, NotFound
from agent.metrics import Metrics
from agent.pending import PendingWrites
from agent.store.base import Fenced, Store
from agent.vocab import Severity, Via

if TYPE_CHECKING:
    from agent.engine import Engine

log = structlog.get_logger(__name__)

WAIT_S = 5.0
POLL_S = 0.02
KEEP_S = 86400.0
CHANNEL = "onwatch_relay"
SCHEMA = """
CREATE TABLE IF NOT EXISTS relayed (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL,
    created_at REAL NOT NULL, instance TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'due',
    result TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS relayed_due ON relayed (status, id);
"""
_ERRORS: dict[str, type[ActionError]] = {"Conflict": Conflict, "NotFound": NotFound,
                                         "Invalid": Invalid}
#: Arguments that are enums travel as their value and come back as the enum.
_TYPES: dict[str, Callable[[Any], Any]] = {"via": Via, "severity": Severity}



class Relaying(Protocol):
    """The engine's side of relaying (its standby flag and its relay)."""

    leading: bool
    relay: Relay | None


P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
E = TypeVar("E", bound=Relaying)


def relayable(fn: Callable[Concatenate[E, P], R]) -> Callable[Concatenate[E, P], R]:
    """The engine action `fn`, forwarded to the leader when this instance stands by."""
    name, sig = fn.__name__, inspect.signature(fn)

    @functools.wraps(fn)
    def action(self: E, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.relay is not None and not self.leading:
            named = dict(sig.bind(self, *args, **kwargs).arguments)
            named.pop("self")
            result: R = self.relay.forward(name, named)
            return result
        return fn(self, *args, **kwargs)

    return action


class Relay:
    def __init__(self, store: Store, instance: str) -> None:
        self.store = store
        self.instance = instance
        store.create_tables(SCHEMA)

    def forward(self, kind: str, kwargs: dict[str, Any]) -> Any:
        payload = json.dumps({k: (v.value if hasattr(v, "value") else v)
                              for k, v in kwargs.items()})
        with self.store.tx():
            rid = int(self.store.db.execute(
                "INSERT INTO relayed (kind, payload, created_at, instance) VALUES (?,?,?,?) "
                "RETURNING id", (kind, payload, time.time(), self.instance)).fetchone()[0])
            self.store.db.execute(f"NOTIFY {CHANNEL}")
        log.info("action_relayed", kind=kind, relay=rid)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            row = self.store.db.execute("SELECT status, result FROM relayed WHERE id = ?",
                                        (rid,)).fetchone()
            if row is not None and row[0] != "due":
                return self._answer(json.loads(row[1]))
            time.sleep(POLL_S)
        raise Conflict(f"this instance is a standby and no leader took the {kind} within "
                       f"{WAIT_S:g} s; it stays queued and the next leader applies it")

    def _answer(self, result: dict[str, Any]) -> Any:
        if "error" in result:
            raise _ERRORS.get(result["error"], Conflict)(result["message"])
        if "incident" in result:
            return self.store.incident(int(result["incident"]))
        return result.get("value")


def apply_due(engine: Engine, store: Store) -> int:
    """On the leader: apply every due relayed action through `engine`; returns how many."""
    from agent.incidents import Incident

    rows = store.db.execute("SELECT id, kind, payload FROM relayed WHERE status = 'due' "
                            "ORDER BY id LIMIT 100").fetchall()
    for rid, kind, payload in rows:
        kwargs = {k: _TYPES[k](v) if k in _TYPES and v is not None else v
                  for k, v in json.loads(payload).items()}
        try:
            value = getattr(engine, kind)(**kwargs)
        except ActionError as exc:
            result: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
        except Exception as exc:  # a bug: the row says so instead of being retried for ever
            log.exception("relayed_action_failed", kind=kind, relay=rid)
            result = {"error": "Conflict", "message": f"the leader failed to apply it: {exc}"}
        else:
            result = ({"incident": value.id} if isinstance(value, Incident)
                      else {"value": value if isinstance(value, int | str | None) else None})
        with store.tx():
            store.db.execute("UPDATE relayed SET status = ?, result = ? WHERE id = ?",
                             ("failed" if "error" in result else "done", json.dumps(result),
                              rid))
        log.info("relayed_action_applied", kind=kind, relay=rid, outcome=result)
    if rows:
        with store.tx():
            store.db.execute("DELETE FROM relayed WHERE status != 'due' AND created_at < ?",
                             (time.time() - KEEP_S,))
    return len(rows)


class Leading:
    store: Store
    metrics: Metrics
    leading: bool
    pending: PendingWrites
    on_fenced: Callable[[str], None]
    #: Wired by the daemon: Runner.catch_up (what this instance saw while standing by).
    after_takeover: Callable[[], None] = staticmethod(lambda: None)

    def restore(self) -> None:
        raise NotImplementedError

    def lead(self, leading: bool) -> None:
        """Lead (reload open incidents from the store, as at start) or stand by (drop them)."""
        self.leading = leading
        if not leading:  # the new leader stored or owns all of it
            self.pending = PendingWrites(self.metrics.store_errors.inc)
        self.restore()
        if leading:
            self.after_takeover()

    def read_or_none(self, read: Callable[[], T]) -> T | None:
        """A read the store refuses (a database down) finds nothing: paging goes on."""
        try:
            return read()
        except self.store.errors:
            return None

    def _flush(self, now: float) -> bool:
        try:
            return self.pending.flush(self.store, now)
        except Fenced as exc:  # never kept for later, never sent from memory
            log.warning("write_fenced", reason=str(exc))
            self.on_fenced(str(exc))
            return False
