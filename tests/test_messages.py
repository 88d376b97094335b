"""Message forms: the rich body, the one-line SMS form under 160 characters, overrides."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.config import ConfigError, load
from agent.incidents import Incident, State
from notifiers.messages import SMS_LIMIT, render

TZ = ZoneInfo("Europe/London")
INC = Incident(12, "pos-terminal", "pos-terminal is down", "critical", State.OPEN,
               "connection refused by 10.0.0.5:9100 " + "and a very long explanation " * 6,
               1_780_000_000.0, 1_779_999_900.0)
LINK = "https://onwatch.example.com/ack/MTJ8YWxpY2V8YWNrfDE3ODA2MDQ4MDA.AbCdEfGhIjKlMnOpQrStUv"


def test_page_has_what_since_reason_id_and_link() -> None:
    m = render("page", INC, target="10.0.0.5:9100", link=LINK, reason="step 1 of 3",
               tz=TZ, message_id="abc")
    assert m.title == "[DOWN] pos-terminal - incident #12"
    assert "Since: 2026-05-28" in m.body and "BST" in m.body  # the business's time zone
    assert "Reason: connection refused" in m.body and f"Acknowledge: {LINK}" in m.body
    assert "Message id: abc" in m.body


def test_sms_form_is_one_line_under_the_limit_and_keeps_the_link() -> None:
    m = render("page", INC, target="10.0.0.5:9100", link=LINK, reason="", tz=TZ)
    assert "\n" not in m.short and len(m.short) <= SMS_LIMIT
    assert m.short.startswith("DOWN pos-terminal #12 since ") and m.short.endswith(LINK)
    assert "..." in m.short  # the reason was cut, not the link


def test_resolved_form_says_how_long() -> None:
    done = replace(INC, state=State.RESOLVED, resolved_at=INC.started_at + 3725,
                   resolved_by="bob")
    m = render("resolved", done, target="", link=None, reason="", tz=TZ)
    assert "resolved after 1h 02m" in m.body and "by bob" in m.body
    assert m.short == "RESOLVED pos-terminal #12 after 1h 02m."


def test_overrides_replace_a_form() -> None:
    m = render("page", INC, target="t", link=LINK, reason="", tz=TZ,
               overrides={"page_sms": "POS DOWN #{incident}: {link}",
                          "page_title": "ALERT {what}"})
    assert m.short == f"POS DOWN #12: {LINK}" and m.title == "ALERT pos-terminal"


@pytest.mark.parametrize(
    ("key", "text", "problem"),
    [("pgae_sms", "x", "templates: pgae_sms: unknown template; keys are <event>, "
                       "<event>_title or <event>_sms with event one of page, repeat, "
                       "ack_expired, resolve_timeout, update, resolved, acknowledged, test"),
     ("page_sms", "{what} {nope}", "templates: page_sms: unknown placeholder {nope}; known: "),
     ("resolved", "{what", "templates: resolved: is not a valid template")],
)
def test_bad_templates_are_config_errors(tmp_path: Path, key: str, text: str,
                                         problem: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nstate_dir = "st"\n[templates]\n{key} = "{text}"\n')
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
