"""Reply channels with the real daemon: page -> answer -> acknowledged -> step 2 never sent.

The policy pages alice (reply channel only) and bob (Apprise json://) at once
and the owner STEP2_AFTER seconds later unless somebody acknowledges. ntfy,
Telegram and Pushover are the local stand-ins of tests/reply_services.py; the
agent's base URLs point at them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from agent import links
from tests.reply_services import Ntfy, Pushover, Telegram
from tests.support import AgentProcess, Receiver, free_port, start_agent, wait_for
from tests.test_escalation_e2e import to

STEP2_AFTER = 4.0
#: Pushover receipts may be polled once a 5 s at most: the answer can take that long.
PUSHOVER_STEP2 = 15.0


def config(state: Path, receiver: Receiver, service: str, reply: str,
           step2: float = STEP2_AFTER) -> str:
    base = f"json://127.0.0.1:{receiver.port}"
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"

{service}

[[contacts]]
name = "alice"
[contacts.reply]
{reply}

[[contacts]]
name = "bob"
urls = ["{base}/bob"]

[[contacts]]
name = "owner"
urls = ["{base}/owner"]

[[policies]]
name = "chain"
ack_timeout = "off"
[[policies.steps]]
notify = ["alice", "bob"]
[[policies.steps]]
after = "{step2:g}s"
notify = ["owner"]

[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {free_port()}
interval = "1s"
timeout = "500ms"
confirm = 1
policy = "chain"
"""


def stored(state: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    db = sqlite3.connect(f"file:{state / 'onwatch.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        inc = db.execute("SELECT * FROM incidents WHERE id = 1").fetchone()
        rows = db.execute("SELECT * FROM timeline WHERE incident_id = 1 ORDER BY seq")
        return (dict(inc) if inc else {}), [dict(r) for r in rows]
    finally:
        db.close()


async def acknowledged(state: Path) -> bool:
    return stored(state)[0].get("state") == "acknowledged"


def token(state: Path, contact: str, action: str, *, incident: int = 1, ttl: int = 600) -> str:
    key = links.load_or_create_key(state)
    episode = links.episode_of(stored(state)[0]["opened_at"]) if incident == 1 else 0
    return links.sign(key, links.Claims(incident, contact, action, int(time.time()) + ttl,
                                        episode))


async def finish(agent: AgentProcess, state: Path, receiver: Receiver, channel: str,
                 step2: float = STEP2_AFTER) -> None:
    """What every channel must show once alice answered."""
    inc, timeline = stored(state)
    assert (inc["state"], inc["acknowledged_by"]) == ("acknowledged", "alice")
    ack = [e for e in timeline if e["kind"] == "acknowledged"]
    assert len(ack) == 1 and json.loads(ack[0]["data"])["via"] == channel
    assert ack[0]["actor"] == "alice" and ack[0]["at"] >= inc["opened_at"]
    await wait_for(lambda: _got(receiver, "bob", "acknowledged"), 10, "bob hears alice has it")
    wait = inc["opened_at"] + step2 + 1.0 - time.time()
    await asyncio.sleep(max(0.0, wait))  # past step 2's due time
    assert to(receiver, "owner") == [], "step 2 was sent after the acknowledgement"
    assert (await agent.event("reply_accepted"))["channel"] == channel


async def _got(receiver: Receiver, who: str, word: str) -> bool:
    return any(word in (m.get("title", "") + m.get("message", "")).lower()
               for m in to(receiver, who))


async def test_ntfy_button_acknowledges_across_a_dropped_stream(tmp_path: Path) -> None:
    ntfy = await Ntfy(write_tokens={"alice-replies": "tk_alice"}, read_token="tk_agent").start()
    receiver = await Receiver().start()
    state = tmp_path / "state"
    cfg = config(state, receiver, f'[replies.ntfy]\nurl = "{ntfy.url}"\ntoken = "tk_agent"',
                 'ntfy_topic = "alice-pages"\nntfy_reply_topic = "alice-replies"\n'
                 'ntfy_token = "tk_alice"')
    agent = await start_agent(cfg, tmp_path)
    try:
        await wait_for(lambda: _true(ntfy.subscriptions >= 1), 10, "the agent subscribes")
        page = (await wait_for(lambda: _true([m for m in ntfy.on("alice-pages")
                                              if m.get("actions")]), 10, "a page"))[0]
        assert [a["label"] for a in page["actions"]] == ["Acknowledge", "Resolve"]
        assert page["actions"][0]["url"] == f"{ntfy.url}/alice-replies"
        # Junk on the stream, answers that must change nothing, then a cut stream.
        ntfy.inject(b"this is not json\n")
        ntfy.inject(b'{"event": "message", "topic": "alice-replies"}\n')
        forged = links.sign(b"k" * 32, links.Claims(1, "alice", "ack", int(time.time()) + 60, 0))
        for bad in (forged, token(state, "bob", "ack"), token(state, "alice", "ack", ttl=-5),
                    page["actions"][0]["body"][:-3] + "AAA"):
            ntfy._store("alice-replies", {"message": bad})
        ntfy._store("stranger-replies", {"message": page["actions"][0]["body"]})
        await wait_for(lambda: _true(len(agent.events("reply_refused")) >= 4), 10,
                       "four refusals")
        assert not await acknowledged(state)
        ntfy.drop()
        pressed = time.monotonic()
        assert await ntfy.press(page, "Acknowledge") == 200  # while disconnected
        await wait_for(lambda: acknowledged(state), 10, "acknowledged")
        took = time.monotonic() - pressed
        assert ntfy.subscriptions >= 2  # it came back, and resumed with since=
        await wait_for(lambda: _true([m for m in ntfy.on("alice-pages") if "acknowledged by "
                                      "alice, escalation stopped" in m["message"]]), 10,
                       "the confirmation on alice's topic")
        await finish(agent, state, receiver, "ntfy")
        assert took < 5.0
    finally:
        assert await agent.stop() == 0
        await receiver.close()
        await ntfy.close()


async def test_telegram_button_acknowledges_and_strangers_are_ignored(tmp_path: Path) -> None:
    tg = await Telegram().start()
    receiver = await Receiver().start()
    state = tmp_path / "state"
    cfg = config(state, receiver, f'[replies.telegram]\nbot_token = "{tg.token}"\n'
                 f'api_url = "{tg.url}"\npoll_timeout = "2s"', "telegram_chat_id = 4242")
    agent = await start_agent(cfg, tmp_path)
    try:
        page = (await wait_for(lambda: _true([m for m in tg.sent if "reply_markup" in m]), 10,
                               "a page with buttons"))[0]
        assert page["chat"]["id"] == 4242
        buttons = page["reply_markup"]["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["Acknowledge", "Resolve"]
        assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)
        tg.inject("garbage")
        tg.inject({"update_id": tg.next_id(), "callback_query": {"id": "q1"}})
        tg.inject({"update_id": tg.next_id(), "message": {"text": "hi"}})
        tg.press(page, "Acknowledge", user_id=999, username="mallory")  # not alice
        stranger = dict(page, chat={"id": 777, "type": "private"})
        tg.press(stranger, "Acknowledge", user_id=777)
        tg.press(page, "Acknowledge", user_id=4242, data="1.ack.9999999999.AAAAAAAAAAAAAAAAAAAAAA")
        await wait_for(lambda: _true(agent.events("reply_refused")), 10, "a refusal")
        await wait_for(lambda: _true(len(agent.events("reply_unknown_sender")) >= 2), 10,
                       "strangers ignored")
        assert not await acknowledged(state)
        pressed = time.monotonic()
        tg.press(page, "Acknowledge", user_id=4242)
        await wait_for(lambda: acknowledged(state), 10, "acknowledged")
        assert time.monotonic() - pressed < 5.0
        await wait_for(lambda: _true([a for a in tg.answered
                                      if "acknowledged by alice" in a.get("text", "")]), 10,
                       "answerCallbackQuery")
        assert any("#1 acknowledged by alice, escalation stopped" in m["text"] for m in tg.sent)
        await finish(agent, state, receiver, "telegram")
        tg.press(page, "Acknowledge", user_id=4242)  # a replay: nothing changes
        await wait_for(lambda: _true(agent.events("reply_no_effect")), 10, "the replay refused")
    finally:
        assert await agent.stop() == 0
        await receiver.close()
        await tg.close()


async def test_pushover_receipt_acknowledges_and_records_who(tmp_path: Path) -> None:
    po = await Pushover().start()
    receiver = await Receiver().start()
    state = tmp_path / "state"
    cfg = config(state, receiver, f'[replies.pushover]\napp_token = "{po.app_token}"\n'
                 f'api_url = "{po.url}"\nretry = "30s"\nexpire = "1h"\npoll_interval = "5s"',
                 'pushover_user = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"',
                 step2=PUSHOVER_STEP2)
    agent = await start_agent(cfg, tmp_path)
    try:
        page = (await wait_for(lambda: _true([m for m in po.sent if m.get("priority") == "2"]),
                               10, "an emergency page"))[0]
        assert (page["retry"], page["expire"]) == ("30", "3600")
        receipt = next(iter(po.receipts))
        po.acknowledge(receipt, "uQiRzpo4DXghDmr9QzzfQu27cmVRsG", "alices-phone")
        await wait_for(lambda: acknowledged(state), 12, "acknowledged (a receipt poll a 5 s)")
        assert "pushover user on alices-phone" in (await agent.event("reply_accepted"))["who"]
        await wait_for(lambda: _true([m for m in po.sent if "escalation stopped" in
                                      m["message"]]), 10, "the confirmation")
        await finish(agent, state, receiver, "pushover", PUSHOVER_STEP2)
    finally:
        assert await agent.stop() == 0
        await receiver.close()
        await po.close()


async def _true(value: Any) -> Any:
    return value
