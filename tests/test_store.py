"""Both stores: atomic transitions, state that survives a reopen, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.incidents import Incident, State, TimelineEntry
from agent.store.records import OutboxMessage
from agent.store.sqlite import Store, StoreError
from tests.pg import Opener


def incident(i: int = 1, state: State = State.OPEN) -> Incident:
    return Incident(i, "pos", "pos is down", "high", state, "refused", 110.0, 100.0)


def test_transition_survives_reopen(store_opener: Opener) -> None:
    store = store_opener()
    with store.tx():
        store.save_incident(incident())
        store.append(1, [TimelineEntry(110.0, "opened", "onwatch", "pos is down", {"x": 1})])
        store.enqueue(OutboxMessage("m1", 1, "alice", "opened", "t", "b", 110.0, 110.0))
    store.close()

    again = store_opener()
    assert [i.id for i in again.open_incidents()] == [1]
    assert again.timeline(1)[0].data == {"x": 1}
    assert [m.id for m in again.due_messages(now=200.0)] == ["m1"]
    assert again.due_messages(now=100.0) == []  # not yet due
    assert again.next_incident_id() == 2


def test_failed_transition_stores_nothing(store_opener: Opener) -> None:
    store = store_opener()
    with pytest.raises(RuntimeError), store.tx():
        store.save_incident(incident())
        raise RuntimeError("crash mid-transition")
    assert store.open_incidents() == []


def test_resolved_incidents_are_not_open(store_opener: Opener) -> None:
    store = store_opener()
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


def test_readonly_open_of_an_empty_database_says_what_to_do(pg_url: str) -> None:
    from agent.store.pg import PgStore

    with pytest.raises(StoreError, match="onwatch run"):
        PgStore.open(pg_url, readonly=True)


def test_a_store_url_that_cannot_be_used_is_named_without_its_password() -> None:
    from agent.store.pg import PgStore
    from tests.pg import need_server

    need_server()
    url = "postgresql://onwatch:s3cr3t-pw@127.0.0.1:5432/no_such_db_for_onwatch"
    with pytest.raises(StoreError) as err:
        PgStore.open(url)
    text = str(err.value)
    assert "s3cr3t-pw" not in text
    assert "postgresql://onwatch:***@127.0.0.1:5432/no_such_db_for_onwatch" in text
    assert "[agent] store" in text


def test_store_urls_are_redacted_in_both_forms() -> None:
    from agent.store.dsn import redact

    assert redact("postgresql://u:p%40ss@h:5/db?sslmode=require") == \
        "postgresql://u:***@h:5/db?sslmode=require"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("host=h password='a b' user=u") == "host=h password=*** user=u"


def test_tables_of_other_modules_are_made_on_both_stores(store_opener: Opener) -> None:
    store = store_opener()
    store.create_tables("CREATE TABLE IF NOT EXISTS extra (id INTEGER PRIMARY KEY "
                        "AUTOINCREMENT, at REAL NOT NULL, note TEXT);")
    with store.tx():
        first = store.db.execute("INSERT INTO extra (at, note) VALUES (?, ?) RETURNING id",
                                 (1.5e9 + 0.25, "50%")).fetchone()[0]
    row = store.db.execute("SELECT * FROM extra WHERE id = ?", (first,)).fetchone()
    assert dict(row) == {"id": first, "at": 1.5e9 + 0.25, "note": "50%"}
    store.create_tables("CREATE TABLE IF NOT EXISTS extra (id INTEGER PRIMARY KEY);")  # again


def test_remote_probe_keys_and_replays_on_both_stores(store_opener: Opener) -> None:
    from agent.store.probes import ProbeStore

    probes = ProbeStore(store_opener())
    assert probes.add("branch-1", 10.0) == 1
    assert probes.accept("branch-1", 5, 11.0) and not probes.accept("branch-1", 5, 12.0)
    assert probes.revoke("branch-1", 13.0) and not probes.accept("branch-1", 6, 14.0)
    assert probes.add("branch-1", 15.0) == 2  # a new key: accepted again
    row = probes.get("branch-1")
    assert row is not None and row.active and row.last_seq == 5 and row.last_seen == 11.0
