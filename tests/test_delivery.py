"""Delivery through real Apprise to local receivers that can be told to fail.

The dispatcher runs in-process against a real store; the receivers are real
HTTP services behind Apprise's json:// URLs.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from agent.config_contacts import Contact
from agent.config_notify import DeliveryPolicy
from agent.metrics import Metrics
from agent.outbox import Dispatcher, backoff
from agent.store.base import Store
from agent.store.records import OutboxMessage
from tests.pg import Opener
from tests.support import Receiver, onwatch, wait_for
from tests.test_store import incident


def message(i: str = "m1", contact: str = "alice") -> OutboxMessage:
    now = time.time()
    return OutboxMessage(i, None, contact, "page", "[DOWN] pos - incident #1", "pos is down",
                         now, now, short="DOWN pos #1")


async def run(store: Store, contacts: dict[str, Contact], policy: DeliveryPolicy,
              unreachable: list[tuple[int, str, str]] | None = None) -> Dispatcher:
    wake = asyncio.Event()
    sink = unreachable if unreachable is not None else []
    d = Dispatcher(store, contacts, Metrics(), wake, time.time, policy=policy,
                   on_unreachable=lambda *a: sink.append(a))
    d.start()
    wake.set()
    return d


def row(store: Store, msg_id: str = "m1") -> dict[str, object]:
    found = [m for m in store.due_messages(now=1e12, limit=1000) if m.id == msg_id]
    if found:
        return {"status": found[0].status, "attempts": found[0].attempts}
    r = store.db.execute("SELECT status, attempts, dead_channels FROM outbox WHERE id = ?",
                          (msg_id,)).fetchone()
    return {"status": r[0], "attempts": r[1], "dead": json.loads(r[2])}


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff(n, 10.0) for n in range(1, 7)] == [2, 4, 8, 10, 10, 10]


async def test_temporary_failure_is_retried_until_the_service_recovers(
        store_opener: Opener) -> None:
    rx = await Receiver(status=503).start()
    store = store_opener()
    with store.tx():
        store.enqueue(message())
    d = await run(store, {"alice": Contact("alice", (f"json://127.0.0.1:{rx.port}/a",))},
                  DeliveryPolicy(retry_cap=1.0, deadline=60.0, send_timeout=2.0))
    try:
        await wait_for(lambda: _n(rx.attempts, 2), 10, "two refused attempts")
        rx.status = 200
        recovered = time.time()
        await wait_for(lambda: _n(rx.messages, 1), 10, "delivery after recovery")
        assert time.time() - recovered <= 1.0 + 1.5  # within the backoff cap (+ load slack)
    finally:
        await d.stop(1)
        await rx.close()
    assert row(store)["status"] == "delivered"
    attempts = row(store)["attempts"]
    assert isinstance(attempts, int) and attempts == len(rx.attempts) <= 6


async def test_permanent_failure_is_not_retried_and_falls_back(store_opener: Opener) -> None:
    rx = await Receiver(statuses={"/push": 400}).start()
    store = store_opener()
    with store.tx():
        store.enqueue(message())
    urls = (f"json://127.0.0.1:{rx.port}/push", f"json://127.0.0.1:{rx.port}/sms")
    d = await run(store, {"alice": Contact("alice", urls)},
                  DeliveryPolicy(retry_cap=1.0, deadline=60.0, send_timeout=2.0))
    started = time.time()
    try:
        await wait_for(lambda: _n(rx.messages, 1), 5, "the fallback channel")
        assert time.time() - started < 5
        await asyncio.sleep(1.5)  # a retry of the refused channel would come within this
    finally:
        await d.stop(1)
        await rx.close()
    assert [p for p, _ in rx.attempts] == ["/push", "/sms"]
    assert rx.messages[0]["_path"] == "/sms"


async def test_every_channel_refusing_fails_at_once_and_reports_unreachable(store_opener: Opener
                                                                           ) -> None:
    rx = await Receiver(status=401).start()
    store = store_opener()
    with store.tx():
        store.save_incident(incident())
        store.enqueue(OutboxMessage("m1", 1, "alice", "page", "t", "b", time.time(), time.time()))
    unreachable: list[tuple[int, str, str]] = []
    d = await run(store, {"alice": Contact("alice", (f"json://127.0.0.1:{rx.port}/a",))},
                  DeliveryPolicy(retry_cap=1.0, deadline=60.0, send_timeout=2.0), unreachable)
    try:
        await wait_for(lambda: _failed(store), 5, "the message marked failed")
    finally:
        await d.stop(1)
        await rx.close()
    assert unreachable == [(1, "alice", "page")]
    assert len(rx.attempts) == 1
    kinds = [e.kind for e in store.timeline(1)]
    assert kinds == ["notification_failed"]
    assert "refused it permanently" in store.timeline(1)[0].message


async def test_hanging_service_is_bounded_by_the_send_timeout(store_opener: Opener) -> None:
    rx = await Receiver().start()
    rx.hang = asyncio.Event()
    rx.hang.set()
    store = store_opener()
    with store.tx():
        store.enqueue(message())
    d = await run(store, {"alice": Contact("alice", (f"json://127.0.0.1:{rx.port}/a",))},
                  DeliveryPolicy(retry_cap=1.0, deadline=60.0, send_timeout=1.0))
    try:
        await wait_for(lambda: _n(rx.attempts, 2), 10, "a second attempt after the timeout")
        rx.hang.clear()
        await wait_for(lambda: _delivered(store), 10, "delivery once it answers again")
    finally:
        await d.stop(1)
        await rx.close()


async def test_deadline_ends_the_retries(store_opener: Opener) -> None:
    rx = await Receiver(status=503).start()
    store = store_opener()
    with store.tx():
        store.enqueue(message())
    d = await run(store, {"alice": Contact("alice", (f"json://127.0.0.1:{rx.port}/a",))},
                  DeliveryPolicy(retry_cap=0.5, deadline=2.0, send_timeout=1.0))
    try:
        await wait_for(lambda: _failed(store, None), 10, "the message given up")
    finally:
        await d.stop(1)
        await rx.close()
    assert 2 <= len(rx.attempts) <= 6


async def _n(items: list[object], n: int) -> bool:
    return len(items) >= n


async def _delivered(store: Store) -> bool:
    return row(store)["status"] == "delivered"


async def _failed(store: Store, _: object = None) -> bool:
    return row(store)["status"] == "failed"


async def test_test_notify_prints_each_channel_outcome_without_secrets(tmp_path: Path) -> None:
    rx = await Receiver(statuses={"/bad": 403}).start()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp_path / 'st'}"
[[contacts]]
name = "alice"
urls = ["json://bob:hunter2-canary@127.0.0.1:{rx.port}/good",
        "json://127.0.0.1:{rx.port}/bad"]
[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = 9
contacts = ["alice"]
""")
    try:
        res = await asyncio.to_thread(onwatch, "test-notify", "alice", "--config", str(cfg))
    finally:
        await rx.close()
    lines = res.stdout.splitlines()
    assert res.returncode == 1
    assert lines[0].startswith("ok   json://bob:****@127.0.0.1") and "delivered" in lines[0]
    assert lines[1].startswith("FAIL json://127.0.0.1") and "HTTP 403" in lines[1]
    assert "permanent" in lines[1]
    assert "hunter2-canary" not in res.stdout + res.stderr
    assert [p for p, _ in rx.attempts] == ["/good", "/bad"]


async def test_uplink_down_holds_everything_and_drains_when_back(store_opener: Opener) -> None:
    a, b = await Receiver().start(), await Receiver().start()
    await a.close()
    await b.close()  # every notification service unreachable: connections refused
    store = store_opener()
    with store.tx():
        store.enqueue(message("m1", "alice"))
        store.enqueue(message("m2", "owner"))
    metrics = Metrics()
    wake = asyncio.Event()
    d = Dispatcher(store, {"alice": Contact("alice", (f"json://127.0.0.1:{a.port}/a",)),
                           "owner": Contact("owner", (f"json://127.0.0.1:{b.port}/o",))},
                   metrics, wake, time.time,
                   policy=DeliveryPolicy(retry_cap=0.3, deadline=1.0, send_timeout=1.0))
    d.start()
    try:
        await wait_for(lambda: _offline(d), 5, "the uplink found down")
        await asyncio.sleep(1.5)  # past the deadline: without the hold they would fail
        assert {row(store, i)["status"] for i in ("m1", "m2")} == {"due"}
        assert metrics.uplink_up._value.get() == 0
        await a.start()
        await b.start()
        await wait_for(lambda: _n(a.messages + b.messages, 2), 10, "both delivered")
        await wait_for(lambda: _online(d), 5, "the uplink back")
    finally:
        await d.stop(1)
        await a.close()
        await b.close()
    assert {row(store, i)["status"] for i in ("m1", "m2")} == {"delivered"}
    assert metrics.uplink_up._value.get() == 1


async def _offline(d: Dispatcher) -> bool:
    return d.offline_since is not None


async def _online(d: Dispatcher) -> bool:
    return d.offline_since is None
