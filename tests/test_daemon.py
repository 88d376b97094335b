"""The daemon as a real process: restart with an open incident, secrets, a bounded drain."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

from tests.support import Receiver, outbox_delivered, start_agent, wait_for
from tests.test_e2e import Target

CANARY = "s3cr3t-canary-7f3a"


def config(state: Path, port: int, receiver: Receiver) -> str:
    # The password in the contact URL is the canary: it must never be logged.
    url = receiver.url.replace("json://", f"json://onwatch:{CANARY}@")
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
log_level = "debug"

[[contacts]]
name = "owner"
urls = ["{url}"]

[[checks]]
name = "pos"
type = "http"
url = "http://127.0.0.1:{port}/"
interval = "1s"
timeout = "900ms"
confirm = 3
recheck_interval = "100ms"
contacts = ["owner"]
"""


async def test_open_incident_survives_kill_and_is_resolved_once(tmp_path: Path) -> None:
    target, receiver = Target(), await Receiver().start()
    await target.start()
    port = target.port
    await target.stop()  # the target is down from the start
    state = tmp_path / "state"
    cfg = config(state, port, receiver)
    first = await start_agent(cfg, tmp_path)
    try:
        await wait_for(lambda: _has(receiver, "[DOWN] pos"), 10, "the DOWN page")
        # Let the delivery be recorded, then kill without a chance to clean up.
        await wait_for(lambda: outbox_delivered(state), 5, "the delivery to be stored")
    finally:
        await first.stop(signal.SIGKILL)

    second = await start_agent(cfg, tmp_path)
    try:
        # The restarted agent knows the check is down: failing runs page nobody again.
        await wait_for(lambda: _runs(second), 10, "a few failing runs after restart")
        assert [t for t in receiver.titles() if "[DOWN]" in t] == ["[DOWN] pos - incident #1"]
        await target.start()
        await wait_for(lambda: _has(receiver, "[RESOLVED] pos"), 10, "the RESOLVED message")
        _, metrics_text = await second.get("/metrics")
        _, health = await second.get("/healthz")
        cli = [await second.cli(*args) for args in (["incidents"], ["show", "1"], ["validate"])]
    finally:
        code = await second.stop()
        await target.runner.cleanup()
        await receiver.close()
    assert code == 0
    db = sqlite3.connect(state / "onwatch.db")
    rows = db.execute("SELECT id, state FROM incidents").fetchall()
    raw_db = (state / "onwatch.db").read_bytes() + b"".join(
        p.read_bytes() for p in state.glob("onwatch.db-*"))
    db.close()
    assert rows == [(1, "resolved")]
    assert second.events("incidents_restored")[0]["open"] == 1

    # The canary secret never appears: not in logs at debug level, not in the store.
    logs = "\n".join(first.raw_log + second.raw_log)
    assert "incident_opened" in logs and "notification_delivered" in logs
    assert CANARY not in logs
    assert "onwatch_notifications_total" in metrics_text and CANARY not in metrics_text
    assert CANARY not in health
    assert all(r.returncode == 0 for r in cli), [r.stderr for r in cli]
    assert "notification_delivered" in cli[1].stdout
    assert not any(CANARY in r.stdout + r.stderr for r in cli)
    assert CANARY.encode() not in raw_db


async def _has(receiver: Receiver, title: str) -> bool:
    return any(title in t for t in receiver.titles())


async def _runs(agent) -> bool:  # type: ignore[no-untyped-def]
    value = await agent.metric('onwatch_check_runs_total{check="pos",result="connect"}')
    return bool(value and value >= 3)


async def test_sigterm_with_a_probe_hanging_exits_0_within_seconds(tmp_path: Path) -> None:
    connected = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the agent goes away
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    agent = await start_agent(f"""
[agent]
state_dir = "{tmp_path / 'state'}"
listen = "127.0.0.1:0"

[[contacts]]
name = "ops"
urls = ["json://127.0.0.1:9/ops"]

[[checks]]
name = "slow"
type = "http"
url = "http://127.0.0.1:{port}/"
interval = "60s"
timeout = "50s"
contacts = ["ops"]
""", tmp_path)
    try:
        await asyncio.wait_for(connected.wait(), 10)
        began = time.monotonic()
        code = await agent.stop(signal.SIGTERM, timeout=10)
        took = time.monotonic() - began
    finally:
        server.close()
        await server.wait_closed()
    assert code == 0
    assert took < 6, f"drain took {took:.1f}s"
    assert agent.events("agent_stopped")
