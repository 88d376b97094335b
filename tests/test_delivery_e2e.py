"""Delivery with the real daemon: an unreachable contact escalates at once; a kill
between "due" and "delivered" repeats a message at most once, with the same id."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from tests.support import Receiver, free_port, outbox_delivered, start_agent, wait_for
from tests.test_escalation_e2e import _count, config, to


async def test_contact_reachable_on_no_channel_escalates_at_once(tmp_path: Path) -> None:
    receiver = await Receiver(statuses={"/alice": 400}).start()
    # Step 2 would normally wait 60 s for alice's acknowledgement.
    cfg = config(tmp_path / "state", receiver, dead_port=free_port()).replace(
        'after = "3s"', 'after = "60s"')
    agent = await start_agent(cfg, tmp_path)
    try:
        await wait_for(lambda: _count(receiver, "owner", 1), 10, "the owner paged at once")
    finally:
        assert await agent.stop() == 0
        await receiver.close()
    assert ("/alice", 400) in receiver.attempts
    failed = agent.events("notification_failed")
    assert failed and failed[0]["contact"] == "alice"
    assert agent.events("incident_notify")[-1]["contacts"] == ["owner"]


async def test_kill_between_due_and_delivered_repeats_once_with_the_same_id(tmp_path: Path
                                                                           ) -> None:
    receiver = await Receiver().start()
    receiver.hang = asyncio.Event()
    receiver.hang.set()  # the first page arrives, but its answer never does
    state = tmp_path / "state"
    cfg = config(state, receiver, dead_port=free_port()).replace('after = "3s"', 'after = "1h"')
    first = await start_agent(cfg, tmp_path)
    try:
        await wait_for(lambda: _count(receiver, "alice", 1), 10, "the page to arrive")
    finally:
        await first.stop(signal.SIGKILL)  # before the outbox could mark it delivered
    assert not await outbox_delivered(state)
    receiver.hang.clear()
    second = await start_agent(cfg, tmp_path)
    try:
        await wait_for(lambda: _count(receiver, "alice", 2), 10, "the page sent again")
        await wait_for(lambda: outbox_delivered(state), 5, "the page marked delivered")
        await asyncio.sleep(1.0)  # a third copy would come within this
    finally:
        assert await second.stop() == 0
        await receiver.close()
    pages = to(receiver, "alice")
    assert len(pages) == 2
    ids = [re.search(r"Message id: (\S+)", p["message"]).group(1) for p in pages]  # type: ignore[union-attr]
    assert ids[0] == ids[1]
