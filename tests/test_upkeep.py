"""The store over years: retention (with a fake clock), schema migrations, online backup."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.incidents import Incident, State, TimelineEntry
from agent.store import migrations, upkeep
from agent.store.base import Store
from agent.store.records import OutboxMessage
from agent.store.sqlite import SqliteStore, StoreError
from agent.vocab import Entry, Severity
from tests.pg import Opener

DAY = 86400.0
START = 1_700_000_000.0  # the fake clock's "now" at the first incident
RETENTION = 400 * DAY


def _incident(store: Store, i: int, at: float, *, resolved: bool, msg_status: str = "delivered",
              text: str = "x") -> None:
    inc = Incident(i, "pos", f"pos is down #{i}", Severity.HIGH,
                   State.RESOLVED if resolved else State.OPEN, "refused", at, at,
                   resolved_at=at + 600 if resolved else None)
    with store.tx():
        store.save_incident(inc)
        store.append(i, [TimelineEntry(at + n, Entry.NOTE, "onwatch", text) for n in range(5)])
        store.enqueue(OutboxMessage(f"m{i}", i, "alice", "opened", "t", text, at, at))
        if msg_status != "due":
            store.update_message(f"m{i}", status=msg_status, attempts=1, next_attempt_at=at,
                                 delivered_at=at + 1, last_error=None)


def _count(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_retention_prunes_old_resolved_incidents_never_open_ones(store_opener: Opener) -> None:
    store = store_opener()
    _incident(store, 1, START, resolved=True)                      # old: pruned
    _incident(store, 2, START, resolved=False)                     # old but open: kept
    _incident(store, 3, START, resolved=True, msg_status="due")    # a message still due: kept
    _incident(store, 4, START + 300 * DAY, resolved=True)          # recent: kept
    now = START + 401 * DAY  # the fake clock, a little over the retention later
    pruned = store.prune(now - RETENTION)
    assert (pruned.incidents, pruned.messages) == (1, 1)
    assert store.incident(1) is None and store.timeline(1) == []
    assert [i.id for i in store.incidents()] == [4, 3, 2]
    assert len(store.timeline(2)) == 5 and store.messages(3)
    assert not store.prune(now - RETENTION)  # nothing more to do
    # A year later the next one goes; the open one still stays.
    store.prune(now + 365 * DAY - RETENTION)
    assert [i.id for i in store.incidents()] == [3, 2]


def test_pruning_works_in_bounded_batches(store_opener: Opener) -> None:
    store = store_opener()
    for i in range(1, 26):
        _incident(store, i, START, resolved=True)
    first = upkeep.prune(store, START + 500 * DAY - RETENTION, batch=4, max_batches=3)
    assert (first.incidents, first.more) == (12, True)
    rest = upkeep.prune(store, START + 500 * DAY - RETENTION, batch=4, max_batches=10)
    assert (rest.incidents, rest.more) == (13, False)
    assert _count(store, "timeline") == 0 and _count(store, "outbox") == 0


def test_a_steady_store_stops_growing(tmp_path: Path) -> None:
    """A year of incidents a day, pruned daily with a 30-day retention: the file levels off."""
    store = SqliteStore.open(tmp_path)
    sizes = []
    for day in range(120):
        now = START + day * DAY
        _incident(store, day + 1, now, resolved=True, text="timeline text " * 200)
        store.prune(now - 30 * DAY)
        store.vacuum()
        sizes.append(sum(p.stat().st_size for p in tmp_path.glob("onwatch.db*")))
    assert sizes[119] <= sizes[59] * 1.1, sizes[::10]
    assert sizes[119] < 2 * sizes[29]


async def test_upkeep_loop_uses_the_clock_it_is_given(store_opener: Opener) -> None:
    store = store_opener()
    _incident(store, 1, START, resolved=True)
    task = asyncio.create_task(upkeep.run(store, RETENTION, lambda: START + 401 * DAY,
                                          every=3600))
    for _ in range(100):  # bounded: the first pass runs at once
        if store.incident(1) is None:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert store.incident(1) is None


def test_maintenance_windows_are_pruned_once_over(store_opener: Opener) -> None:
    store = store_opener()
    with store.tx():
        old = store.add_maintenance(checks=["pos"], tags=[], start=START, end=START + 60,
                                    reason="old", by="alice")
        new = store.add_maintenance(checks=["pos"], tags=["shop"], start=START,
                                    end=START + 500 * DAY, reason="long", by="bob")
    assert store.prune(START + 401 * DAY - RETENTION).windows == 1
    assert [w["id"] for w in store.maintenance(START)] == [new] != [old]
    assert store.maintenance(START)[0]["tags"] == ["shop"]


def _version_1_store(path: Path) -> None:
    """A store as onwatch 0.1 left it: version 1, no retention indexes, no auto-vacuum."""
    store = SqliteStore.open(path.parent)
    _incident(store, 1, START, resolved=False)
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX incidents_resolved")
    db.execute("DROP INDEX outbox_done")
    db.execute("DROP INDEX incidents_alert_key")
    db.execute("ALTER TABLE incidents DROP COLUMN labels")  # added late in version 1's life
    db.execute("ALTER TABLE outbox DROP COLUMN link")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def test_older_store_is_copied_then_migrated_one_step_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "onwatch.db"
    _version_1_store(path)
    store = SqliteStore.open(tmp_path)
    assert migrations.version(store._db) == migrations.SCHEMA_VERSION == 2
    indexes = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type = "
                                               "'index'")}
    assert {"incidents_resolved", "outbox_done", "incidents_alert_key"} <= indexes
    assert "link" in migrations._columns(store._db, "outbox")
    assert "labels" in migrations._columns(store._db, "incidents")
    assert [i.id for i in store.open_incidents()] == [1]  # nothing lost
    copy = sqlite3.connect(tmp_path / "onwatch.db.v1.bak")
    assert copy.execute("SELECT value FROM meta").fetchone()[0] == "1"
    assert copy.execute("SELECT COUNT(*) FROM incidents").fetchone()[0] == 1


def test_a_failed_step_leaves_the_store_at_its_version(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "onwatch.db"
    _version_1_store(path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE INDEX half_done ON incidents (title)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(migrations.STEPS, 1, broken)
    with pytest.raises(StoreError):
        SqliteStore.open(tmp_path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchone()[0] == "1"
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None


def test_newer_store_is_refused_naming_both_versions(tmp_path: Path) -> None:
    SqliteStore.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "onwatch.db")
    db.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    db.commit()
    before = (tmp_path / "onwatch.db").read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError) as err:
            SqliteStore.open(tmp_path, readonly=readonly)
        assert "schema version 7" in str(err.value)
        assert f"up to {migrations.SCHEMA_VERSION}" in str(err.value)
    assert (tmp_path / "onwatch.db").read_bytes() == before


def test_backup_is_a_consistent_copy_taken_while_writing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = SqliteStore.open(state)
    for i in range(1, 51):
        _incident(store, i, START + i, resolved=i % 2 == 0)
    config = tmp_path / "c.toml"
    # A contact: a config that can page nobody watches nothing and does not load.
    config.write_text(f'[agent]\nstate_dir = "{state}"\n[[contacts]]\nname = "ops"\n'
                      'urls = ["json://127.0.0.1:9/ops"]\n')
    # The writer holds the store open (like the running agent) and keeps writing.
    with store.tx():
        _ = store.next_incident_id()
    out = subprocess.run([sys.executable, "-m", "agent", "backup", str(tmp_path), "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    copy = next(tmp_path.glob("onwatch-*.db"))
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0] == 50
    assert db.execute("SELECT COUNT(*) FROM timeline").fetchone()[0] == 250
    again = subprocess.run([sys.executable, "-m", "agent", "backup", str(copy), "--config",
                            str(config)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr


def test_a_newer_postgresql_store_is_refused_and_left_alone(pg_url: str) -> None:
    import psycopg

    from agent.store import pg

    pg.PgStore.open(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE onwatch_schema SET version = 99")
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"newer onwatch.*version 99.*up to 2"):
            pg.PgStore.open(pg_url, readonly=readonly)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM onwatch_schema").fetchone() == (99,)


def test_every_schema_version_has_a_postgresql_step_too() -> None:
    from agent.store import pg

    assert set(range(pg.FIRST_VERSION, migrations.SCHEMA_VERSION)) <= set(pg.PG_STEPS)
