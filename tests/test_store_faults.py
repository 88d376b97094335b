"""A full disk must not lose an incident: the page goes out from memory, the agent says it
is unhealthy (503 with the reason, onwatch_store_errors_total, an error log), and once
space returns the store holds the incident with its true times, its page delivered once.

Runs the daemon with its state directory on a 2 MiB tmpfs, which needs root (CI runs as
root); elsewhere it skips with that reason, except under CI, where it must run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Receiver, start_agent, wait_for


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    why = None
    if os.geteuid() != 0:
        why = "mounting a small tmpfs needs root"
    else:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            why = f"cannot mount a tmpfs here: {res.stderr.strip()}"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the full-disk test: {why}")
        pytest.skip(why)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def _fill(where: Path) -> Path:
    """Fill the file system until it refuses; returns the filler (delete it to free)."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # big blocks, then the last crumbs
            for _ in range(100_000):  # bounded: 2 MiB
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def _config(state: Path, receiver: Receiver, port: int) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]
[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {port}
interval = "1s"
timeout = "500ms"
confirm = 1
contacts = ["alice"]
baseline = false
"""


async def test_a_full_disk_delays_the_store_not_the_page(small_disk: Path,
                                                          tmp_path: Path) -> None:
    receiver = await Receiver().start()

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    target = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    state = small_disk / "state"
    agent = await start_agent(_config(state, receiver, port), tmp_path)
    try:
        await wait_for(lambda: _metric_at_least(agent, 'onwatch_check_runs_total{check="pos",'
                                                       'result="ok"}', 2), 10, "pos up")
        filler = _fill(small_disk)
        target.close()
        await target.wait_closed()
        failed_at = time.time()
        # The page still goes out, from memory.
        try:
            await wait_for(lambda: _async(bool(receiver.messages)), 15, "the page")
        except AssertionError:
            raise AssertionError("\n".join(agent.raw_log[-30:])) from None
        status, text = await agent.get("/healthz")
        assert status == 503, text
        health = json.loads(text)
        assert health["status"] == "store_failing" and "cannot be written" in health[
            "store_error"]
        assert health["checks_down"] == ["pos"]
        assert (await agent.metric("onwatch_store_errors_total") or 0) >= 1
        assert await agent.event("store_write_failed")
        # Space returns: the incident is stored with the times it happened at.
        filler.unlink()
        await wait_for(lambda: _healthy(agent), 15, "healthz 200 again")
        assert await agent.event("store_write_recovered")
    finally:
        assert await agent.stop() == 0
        await receiver.close()
    db = sqlite3.connect(f"file:{state / 'onwatch.db'}?mode=ro", uri=True)
    try:
        [(inc_id, opened_at, st)] = db.execute(
            "SELECT id, opened_at, state FROM incidents").fetchall()
        assert st == "open" and abs(opened_at - failed_at) < 5, (opened_at, failed_at)
        rows = db.execute("SELECT status FROM outbox WHERE incident_id = ?", (inc_id,)).fetchall()
        assert rows == [("delivered",)], rows
    finally:
        db.close()
    assert len([m for m in receiver.messages if m["_path"] == "/alice"]) == 1  # not twice


async def _async(value: bool) -> bool:
    return value


async def _metric_at_least(agent, name: str, n: float) -> bool:  # type: ignore[no-untyped-def]
    return (await agent.metric(name) or 0) >= n


async def _healthy(agent) -> bool:  # type: ignore[no-untyped-def]
    status, _ = await agent.get("/healthz")
    return status == 200


async def test_a_locked_store_keeps_the_transition_and_its_page(tmp_path: Path) -> None:
    """Another process holds the database's write lock: the incident waits in memory, its
    page goes out from memory, and it is stored with its own times once the lock is gone."""
    from agent.config import load
    from agent.engine import Engine
    from agent.metrics import Metrics
    from agent.store.records import OutboxMessage
    from agent.store.sqlite import Store
    from agent.vocab import Severity

    cfg = tmp_path / "onwatch.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp_path / 'state'}"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/alice"]
[[policies]]
name = "p"
[[policies.steps]]
notify = ["alice"]
[[checks]]
name = "nightly"
type = "heartbeat"
period = "24h"
token = "a-heartbeat-token-for-the-test"
policy = "p"
""")
    config = load(cfg)
    store = Store.open(config.agent.state_dir)
    metrics = Metrics()
    engine = Engine(config, store, metrics, b"k" * 32, time.time)
    sent: list[OutboxMessage] = []
    engine.deliver_unstored = sent.extend
    other = sqlite3.connect(config.agent.state_dir / "onwatch.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        before = time.time()
        inc = engine.declare(title="POS down", severity=Severity.HIGH, policy="p", by="t",
                             reason="")
        assert [m.contact for m in sent] == ["alice"]  # paged from memory
        assert engine.pending.problem and "locked" in engine.pending.problem
        assert metrics.store_errors._value.get() >= 1
        second = engine.declare(title="Card terminal down", severity=Severity.HIGH,
                                policy="p", by="t", reason="")
        assert second.id == inc.id + 1  # the unstored incident keeps its id
        other.execute("ROLLBACK")
        assert engine.pending.settle(sent[0].id, True, time.time())
        assert engine.pending.flush(store, time.time())
        assert engine.pending.problem is None
        stored = store.incident(inc.id)
        assert stored is not None and before <= stored.opened_at <= before + 2
        assert store.incident(second.id) is not None
        statuses = {m.contact: m.status for m in store.messages(inc.id)}
        assert statuses == {"alice": "delivered"}
    finally:
        other.close()
        store.close()
