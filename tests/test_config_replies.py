"""[replies.*] and [contacts.reply]: the example block validates, mistakes are named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.config import ConfigError, parse
from tests.support import ROOT

ENV = {"SMTP_PASSWORD": "pw", "ALICE_NTFY_TOKEN": "tk_alice", "ALICE_PUSHOVER_KEY": "uKey",
       "ONWATCH_NTFY_TOKEN": "tk_agent", "TELEGRAM_BOT_TOKEN": "1:abc",
       "ONWATCH_MAIL_PASSWORD": "mailpw", "PUSHOVER_APP_TOKEN": "appTok"}


def example_block() -> str:
    text = (ROOT / "config.example.toml").read_text()
    m = re.search(r"# --- reply channels.*?\n(.*?)# --- end of reply channels", text, re.S)
    assert m, "the example config has lost its reply-channel block"
    return "\n".join(line.removeprefix("# ").removeprefix("#")
                     for line in m.group(1).splitlines())


def load(text: str, tmp: Path) -> object:
    import tomllib

    return parse(tomllib.loads(f'[agent]\nstate_dir = "{tmp}"\n' + text), tmp / "c.toml")


def problems(text: str, tmp: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(text, tmp)
    return exc.value.problems


def test_the_example_block_is_a_valid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg = load(example_block(), tmp_path)
    replies = cfg.replies  # type: ignore[attr-defined]
    alice = replies.contacts["alice"]
    assert alice.channels == ("ntfy", "telegram", "email", "pushover")
    assert (alice.ntfy_token, alice.telegram_user_ids, alice.email) == (
        "tk_alice", (123456789,), "alice@example.com")
    assert replies.ntfy.url == "https://ntfy.example.com" and replies.ntfy.token == "tk_agent"
    assert replies.telegram.api_url == "https://api.telegram.org"
    assert replies.email.imap.port == 143 and replies.email.smtp.port == 587
    assert (replies.pushover.retry, replies.pushover.expire) == (60.0, 3600.0)


CONTACT = '[[contacts]]\nname = "alice"\n[contacts.reply]\n'


@pytest.mark.parametrize(("text", "expected"), [
    (CONTACT + "telegram_chat_id = 1\n",
     'contacts[0] "alice".reply: telegram_chat_id: needs [replies.telegram]'),
    ('[replies.ntfy]\n' + CONTACT + 'ntfy_topic = "a"\n',
     "ntfy_reply_topic: is required with ntfy_topic"),
    ('[replies.ntfy]\n' + CONTACT + 'ntfy_topic = "a b"\nntfy_reply_topic = "c"\n',
     "ntfy_topic: must be 1-64 letters"),
    ('[replies.pushover]\napp_token = "x"\nretry = "10s"\n', "retry: Pushover needs at least"),
    ("[replies.telegram]\n", "bot_token: is required"),
    ('[replies.telegram]\nbot_token = "x"\n' + CONTACT + 'telegram_chat_id = 1\n'
     'telegram_user_ids = ["me"]\n', "telegram_user_ids: must be a list of Telegram user ids"),
    ('[replies.telegram]\nbot_token = "x"\n' + CONTACT + 'telegram_chat_id = 1\n'
     'telegram_chat = 2\n', 'unknown key "telegram_chat" (did you mean "telegram_chat_id"?)'),
    ('[replies.telegram]\nbot_token = "x"\n' + CONTACT + "telegram_chat_id = 1\n"
     '[[contacts]]\nname = "bob"\n[contacts.reply]\ntelegram_chat_id = 1\n',
     "telegram_chat_id: is also contact \"alice\"'s"),
    ('[replies.email]\naddress = "a@b.c"\n[replies.email.smtp]\nhost = "h"\n'
     '[replies.email.imap]\nhost = "h"\n', "username: is required"),
])
def test_mistakes_are_named(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(text, tmp_path)
    assert any(expected in p for p in found), found


def test_a_contact_with_only_a_reply_channel_needs_no_urls(tmp_path: Path) -> None:
    cfg = load('[replies.telegram]\nbot_token = "x"\n' + CONTACT + "telegram_chat_id = 7\n",
               tmp_path)
    assert cfg.contacts["alice"].urls == ()  # type: ignore[attr-defined]
