"""Parts of the engine that are not incident transitions (`Engine` inherits both).

- `PreventionActions`: what people agreed to do after an incident, tracked
  until done. An action belongs to an incident, and adding or finishing one is
  written with a timeline entry on that incident in one transaction, like every
  other change to an incident's story.
- `MaintenanceWindows`: windows opened at run time (CLI, API, console). They
  live in the store; the engine keeps them cached for the runner's every result
  and drops the cache whenever it changes one (or, on a standby that becomes
  leader, when it reloads from the store). Opening or ending one on a standby
  goes to the leader (agent/relay.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from agent.detect.maintenance import MaintenanceWindow
from agent.errors import Conflict, NotFound
from agent.incidents import TimelineEntry
from agent.relay import Relay, relayable
from agent.store.base import Store
from agent.vocab import Entry, Via

log = structlog.get_logger(__name__)


class PreventionActions:
    store: Store
    clock: Callable[[], float]

    def add_action(self, incident_id: int, *, text: str, owner: str, by: str,
                   via: Via | None = None) -> int:
        """A prevention action agreed after an incident, tracked until done."""
        inc = self.store.incident(incident_id)
        if inc is None:
            raise NotFound(f"no incident #{incident_id}")
        now = self.clock()
        with self.store.tx():
            aid = self.store.add_action(inc.id, text=text, owner=owner, at=now, by=by)
            self.store.append(inc.id, [TimelineEntry(
                now, Entry.ACTION_ADDED, by, f"prevention action #{aid} for {owner}: {text}",
                {"action": aid, "owner": owner, **_via(via)})])
        return aid

    def finish_action(self, action_id: int, *, by: str, via: Via | None = None) -> None:
        found = next((a for a in self.store.actions() if a.id == action_id), None)
        if found is None:
            raise NotFound(f"no prevention action #{action_id}")
        now = self.clock()
        with self.store.tx():
            if not self.store.finish_action(action_id, at=now, by=by):
                raise Conflict(f"prevention action #{action_id} is already done")
            self.store.append(found.incident_id, [TimelineEntry(
                now, Entry.ACTION_DONE, by, f"prevention action #{action_id} done: {found.text}",
                {"action": action_id, **_via(via)})])


def _via(via: Via | None) -> dict[str, str]:
    return {"via": str(via)} if via is not None else {}


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
