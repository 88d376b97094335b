"""`onwatch test-notify CONTACT` tests the way back too: a test page with buttons, the answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from tests.reply_services import Telegram
from tests.support import ROOT, wait_for


def config(tmp: Path, tg: Telegram) -> Path:
    cfg = tmp / "onwatch.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp / 'state'}"

[replies.telegram]
bot_token = "{tg.token}"
api_url = "{tg.url}"
poll_timeout = "1s"

[[contacts]]
name = "alice"
[contacts.reply]
telegram_chat_id = 4242
""")
    return cfg


async def run_test_notify(cfg: Path, wait: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "test-notify", "alice", "--config", str(cfg),
        "--wait", wait, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=str(ROOT))


async def _sent(tg: Telegram) -> Any:
    return [m for m in tg.sent if "reply_markup" in m]


async def test_test_notify_sends_a_button_and_prints_the_answer(tmp_path: Path) -> None:
    tg = await Telegram().start()
    try:
        proc = await run_test_notify(config(tmp_path, tg), "20s")
        page = (await wait_for(lambda: _sent(tg), 15, "the test page"))[0]
        assert "[TEST]" in page["text"]
        tg.press(page, "Acknowledge", user_id=4242)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode()
        assert proc.returncode == 0, text + err.decode()
        assert "ok   telegram-reply://" in text
        assert ("answer on telegram from telegram user 4242 (@alice) (contact alice): "
                "onwatch heard your test answer (ack) on telegram.") in text
        assert tg.answered and "heard your test answer" in tg.answered[0]["text"]
        assert tg.token not in text + err.decode()  # the bot token never shows
        assert not (tmp_path / "state").exists()  # nothing written
    finally:
        await tg.close()


async def test_test_notify_without_an_answer_fails_and_says_so(tmp_path: Path) -> None:
    tg = await Telegram().start()
    try:
        proc = await run_test_notify(config(tmp_path, tg), "2s")
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 1
        assert "no answer on telegram within 2s" in out.decode()
    finally:
        await tg.close()
