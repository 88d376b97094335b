"""Maintenance windows opened at run time (CLI, API, console): a part of the engine.

`Engine` inherits this. The windows live in the store; the engine keeps them
cached for the runner's every result and drops the cache whenever it changes
one (or, on a standby that becomes leader, when it reloads from the store).
Opening or ending one on a standby goes to the leader (agent/relay.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from agent.detect.maintenance import MaintenanceWindow
from agent.errors import NotFound
from agent.relay import Relay, relayable
from agent.store.base import Store

log = structlog.get_logger(__name__)


class MaintenanceWindows:
    store: Store
    clock: Callable[[], float]
    leading: bool
    relay: Relay | None
    _windows: tuple[MaintenanceWindow, ...] | None

    def runtime_windows(self, now: float) -> tuple[MaintenanceWindow, ...]:
        """Maintenance windows opened with the CLI or API (cached; changed through here)."""
        if self._windows is None:
            self._windows = tuple(
                MaintenanceWindow(f"manual:{w['id']}", frozenset(w["checks"]), frozenset(w["tags"]),
                       w["start"], w["end"], reason=w["reason"])
                for w in self.store.maintenance(now))
        return self._windows

    @relayable
    def start_maintenance(self, *, checks: Sequence[str], tags: Sequence[str], duration: float,
                          reason: str, by: str) -> int:
        now = self.clock()
        with self.store.tx():
            wid = self.store.add_maintenance(checks=checks, tags=tags, start=now,
                                             end=now + duration, reason=reason, by=by)
        self._windows = None
        log.warning("maintenance_started", window=wid, checks=list(checks), tags=list(tags),
                    until=now + duration, by=by)
        return wid

    @relayable
    def end_maintenance(self, window_id: int, *, by: str) -> None:
        with self.store.tx():
            found = self.store.end_maintenance(window_id, self.clock())
        if not found:
            raise NotFound(f"no current maintenance window #{window_id}")
        self._windows = None
        log.warning("maintenance_ended", window=window_id, by=by)
