"""Alert storms: bundled per recipient per interval, nothing dropped."""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp
import pytest

from agent.store.records import OutboxMessage
from agent.storm import StormGate, StormPolicy, bundle
from tests.support import Receiver, start_agent, wait_for

P = StormPolicy(threshold=3, window=60.0, interval=10.0)


@pytest.mark.parametrize(
    ("sent", "due", "now", "expected"),
    [
        ([], 1, 0.0, ("each", 0.0)),
        ([], 3, 0.0, ("each", 0.0)),
        ([], 4, 0.0, ("bundle", 0.0)),  # a burst larger than the threshold: one bundle
        ([0.0, 1.0], 1, 2.0, ("each", 2.0)),
        ([0.0, 1.0, 2.0], 1, 3.0, ("hold", 12.0)),  # in a storm: wait for the interval
        ([0.0, 1.0, 2.0], 5, 12.0, ("bundle", 12.0)),
        ([0.0, 1.0, 2.0], 1, 100.0, ("each", 100.0)),  # the storm is over
    ],
)
def test_gate(sent: list[float], due: int, now: float, expected: tuple[str, float]) -> None:
    gate = StormGate(P)
    for t in sent:
        gate.sent("alice", t)
    assert gate.decide("alice", due, now) == expected


def test_bundle_names_every_incident_and_keeps_links() -> None:
    msgs = [OutboxMessage(f"m{i}", i, "alice", "page", f"[DOWN] c{i} - incident #{i}",
                          f"c{i} is down.\nAcknowledge: http://x/ack/{i}", 0.0, 0.0,
                          link=f"http://x/ack/{i}")
            for i in range(1, 41)]
    m = bundle(msgs)
    assert m.title.startswith("[40 alerts] [DOWN] c1")
    for i in range(1, 41):
        assert f"incident #{i}:" in m.body and f"http://x/ack/{i}" in m.body
    assert len(m.short) <= 160 and m.short.startswith("40 onwatch alerts: #1 #2")


async def test_200_incidents_in_a_minute_reach_alice_in_few_bundled_messages(tmp_path: Path
                                                                            ) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
[notifications]
storm_threshold = 5
storm_window = "60s"
storm_interval = "2s"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]
[[policies]]
name = "p"
[[policies.steps]]
notify = ["alice"]
[[checks]]  # quiet for a day: the incidents here are declared through the API
name = "nightly"
type = "heartbeat"
period = "24h"
token = "a-heartbeat-token-nobody-sends"
policy = "p"
""", tmp_path)
    token = (state / "api.token").read_text().strip()
    began = time.time()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
            for i in range(200):
                async with s.post(f"{agent.base_url}/api/v1/incidents",
                                  json={"title": f"switch port {i} dead", "policy": "p"}) as r:
                    assert r.status == 201

        async def all_named() -> bool:
            text = "\n".join(m["message"] + m["title"] for m in receiver.messages)
            return len(set(re.findall(r"incident #(\d+)", text))) == 200

        await wait_for(all_named, 30, "every incident named in some message")
    finally:
        assert await agent.stop() == 0
        await receiver.close()
    took = time.time() - began
    # At most the threshold singly, then one bundle per interval.
    assert len(receiver.messages) <= 5 + int(took / 2.0) + 2, len(receiver.messages)
    assert any(m["title"].startswith("[") and "alerts]" in m["title"] for m in receiver.messages)


def test_notices_never_start_a_storm() -> None:
    gate = StormGate(P)
    for t in (0.0, 1.0):
        gate.sent("alice", t)
    assert gate.decide("alice", 0, 2.0) == ("each", 2.0)  # resolved/ack notices only
    gate.sent("alice", 2.0)
    assert gate.storming("alice", 3.0) and gate.decide("alice", 1, 3.0) == ("hold", 12.0)
