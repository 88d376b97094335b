"""The SQLite store: atomic transitions, state that survives a reopen, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.incidents import Incident, State, TimelineEntry
from agent.store.records import OutboxMessage
from agent.store.sqlite import Store, StoreError


def incident(i: int = 1, state: State = State.OPEN) -> Incident:
    return Incident(i, "pos", "pos is down", "high", state, "refused", 110.0, 100.0)


def test_transition_survives_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with store.tx():
        store.save_incident(incident())
        store.append(1, [TimelineEntry(110.0, "opened", "onwatch", "pos is down", {"x": 1})])
        store.enqueue(OutboxMessage("m1", 1, "alice", "opened", "t", "b", 110.0, 110.0))
    store.close()

    again = Store.open(tmp_path)
    assert [i.id for i in again.open_incidents()] == [1]
    assert again.timeline(1)[0].data == {"x": 1}
    assert [m.id for m in again.due_messages(now=200.0)] == ["m1"]
    assert again.due_messages(now=100.0) == []  # not yet due
    assert again.next_incident_id() == 2


def test_failed_transition_stores_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with pytest.raises(RuntimeError), store.tx():
        store.save_incident(incident())
        raise RuntimeError("crash mid-transition")
    assert store.open_incidents() == []


def test_resolved_incidents_are_not_open(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with store.tx():
        store.save_incident(incident(1, State.RESOLVED))
        store.save_incident(incident(2, State.OPEN))
    assert [i.id for i in store.open_incidents()] == [2]
    assert [i.id for i in store.incidents()] == [2, 1]


def test_state_dir_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as err:
        Store.open(blocker / "state")
    assert str(blocker / "state") in str(err.value)
    assert "state_dir" in str(err.value)


def test_readonly_open_of_missing_db_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="onwatch run"):
        Store.open(tmp_path, readonly=True)
