"""Prevention actions: what people agreed to do after an incident, tracked until done.

A part of the engine (`Engine` inherits it): an action belongs to an incident,
and adding or finishing one is written with a timeline entry on that incident
in one transaction, like every other change to an incident's story.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.errors import Conflict, NotFound
from agent.incidents import TimelineEntry
from agent.store.base import Store
from agent.vocab import Entry, Via


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
