"""Leading or standing by: the engine's side of agent/leader.py. A part of the engine.

`lead(True)` reloads open incidents and their escalation state from the store
(the start-up path, `Engine.restore`); `lead(False)` drops them with the writes
still pending in memory: the new leader stored or owns all of it. `_flush`
writes what is pending and turns a `Fenced` refusal (another instance leads)
into standing by -- never into a page sent from memory, as a refused write is.
`_read` lets a read the store refuses (a database down) find nothing, so that
detection and paging go on from memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog

from agent.metrics import Metrics
from agent.pending import PendingWrites
from agent.store.base import Fenced, Store

log = structlog.get_logger(__name__)
T = TypeVar("T")


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
