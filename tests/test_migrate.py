"""`onwatch migrate --to postgresql://…`: a SQLite store made by a real agent, copied whole.

The round trip: an agent on SQLite opens an incident and pages; it stops; the
test adds what people leave behind (a prevention action, a maintenance window,
a public notice, a personal token); migrate copies it and verifies the counts;
every row reads back the same from PostgreSQL; the agent started again on
PostgreSQL carries on without paging anyone a second time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg

from agent.store.auth import AuthStore
from agent.store.pg import PgStore
from agent.store.sqlite import SqliteStore
from agent.store.status import StatusStore
from tests.support import Receiver, free_port, onwatch, start_agent, wait_for


def config(state: Path, receiver: Receiver, dead_port: int, store: str = "") -> str:
    line = f'store = "{store}"' if store else ""
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
{line}

[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]

[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {dead_port}
interval = "1s"
timeout = "500ms"
confirm = 1
contacts = ["alice"]
"""


async def _sqlite_store_of_a_real_agent(tmp_path: Path, receiver: Receiver, port: int) -> Path:
    state = tmp_path / "state"
    agent = await start_agent(config(state, receiver, port), tmp_path)
    try:
        await wait_for(lambda: _paged(receiver), 15, "the page to alice")
        await agent.event("notification_delivered")
    finally:
        assert await agent.stop() == 0
    store = SqliteStore.open(state)
    status, auth = StatusStore(store), AuthStore(store)  # their tables, before the transaction
    with store.tx():
        store.add_action(1, text="add a second uplink", owner="alice", at=time.time(),
                         by="alice")
        store.add_maintenance(checks=["pos"], tags=[], start=time.time(),
                              end=time.time() + 3600, reason="cabling", by="bob")
        status.add_notice(kind="opening", at=time.time(), text="Card payments "
                                      "are down", components=["Payments"], incident_id=1)
        auth.add_token("alice", time.time(), "laptop")
    store.close()
    return state


async def _paged(receiver: Receiver) -> bool:
    return len(receiver.messages) >= 1


async def test_migrate_round_trip(tmp_path: Path, pg_url: str) -> None:
    receiver = await Receiver().start()
    port = free_port()
    state = await _sqlite_store_of_a_real_agent(tmp_path, receiver, port)
    cfg = tmp_path / "onwatch.toml"
    done = await asyncio.to_thread(onwatch, "migrate", "--to", pg_url, "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "every count verified" in done.stdout
    for table in ("incidents", "timeline", "outbox", "actions", "maintenance",
                  "public_notices", "api_tokens"):
        assert f"{table} " in done.stdout

    old, new = SqliteStore.open(state, readonly=True), PgStore.open(pg_url)
    try:
        assert new.incidents() == old.incidents() and len(new.incidents()) == 1
        assert new.timeline(1) == old.timeline(1) and new.timeline(1)
        assert new.messages(1) == old.messages(1)
        assert new.messages(1)[0].status == "delivered"
        assert new.actions() == old.actions()
        assert new.maintenance(time.time()) == old.maintenance(time.time())
        assert StatusStore(new).notices() == StatusStore(old).notices()
        assert [t.person for t in AuthStore(new).tokens()] == ["alice"]
        with new.tx():  # identity columns go on after the copied ids
            second = new.add_action(1, text="test the uplink", owner="bob", at=1.0, by="bob")
        assert second == old.actions()[-1].id + 1
    finally:
        old.close()
        new.close()

    # The agent on PostgreSQL finds the incident open and its page delivered: no repeat.
    agent = await start_agent(config(state, receiver, port, pg_url), tmp_path)
    try:
        listed = await agent.cli("incidents")
        assert "#1" in listed.stdout and "open" in listed.stdout, listed.stdout
        await agent.event("leadership_taken")
        await asyncio.sleep(2.0)  # a repeated page would come within this
        assert len(receiver.messages) == 1
    finally:
        assert await agent.stop() == 0
        await receiver.close()


async def test_migrate_refuses_a_running_agent_and_a_used_database(tmp_path: Path,
                                                                   pg_url: str) -> None:
    receiver = await Receiver().start()
    port = free_port()
    state = await _sqlite_store_of_a_real_agent(tmp_path, receiver, port)
    cfg = tmp_path / "onwatch.toml"
    agent = await start_agent(config(state, receiver, port), tmp_path)
    try:
        refused = await asyncio.to_thread(onwatch, "migrate", "--to", pg_url, "--config",
                                          str(cfg))
    finally:
        assert await agent.stop() == 0
        await receiver.close()
    assert refused.returncode == 1
    assert "already running" in refused.stderr and "stopped agent" in refused.stderr
    with psycopg.connect(pg_url) as conn:  # nothing was made in the target
        assert conn.execute("SELECT to_regclass('incidents')").fetchone() == (None,)

    first = await asyncio.to_thread(onwatch, "migrate", "--to", pg_url, "--config", str(cfg))
    assert first.returncode == 0, first.stderr
    again = await asyncio.to_thread(onwatch, "migrate", "--to", pg_url, "--config", str(cfg))
    assert again.returncode == 1 and "already holds incidents" in again.stderr
    secret = pg_url.replace("postgres@", "postgres:pw-s3cret@")
    bad = await asyncio.to_thread(onwatch, "migrate", "--to", secret + "_gone", "--config",
                                  str(cfg))
    assert bad.returncode == 1 and "pw-s3cret" not in bad.stderr + bad.stdout
    assert "postgres:***@" in bad.stderr
    assert "check --to" in bad.stderr and "[agent] store" not in bad.stderr  # not the config's
    assert "nothing was copied" in bad.stderr
