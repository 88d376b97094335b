"""The console in a real browser (Playwright driving Debian's Chromium, JavaScript off) at
phone width (375 px), against a real `onwatch run` whose till check has failed:

sign in through the magic link the agent sends to a local receiver, see the open
incident, acknowledge it, resolve it with cause and fix, add a prevention action, open
the report. Every page must fit the phone's width. Screenshots are saved under
results/console/ (ONWATCH_SCREENSHOTS's parent to change) for a person to look at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests import console_env as cenv
from tests import status_env as env
from tests.support import Receiver, query, start_agent, wait_for

PHONE = {"width": 375, "height": 812}
SHOTS = env.SCREENSHOTS.parent / "console"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = env.require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=executable, args=env.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def shot(page: Any, name: str) -> None:
    """A full-page screenshot, after checking that the page fits the phone's width."""
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_sign_in_ack_resolve_act_and_report_on_a_phone(tmp_path: Path,
                                                              browser: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(cenv.config(state, receiver, cenv.closed_port()), tmp_path)
    ctx = await browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        await wait_for(lambda: query(state, "SELECT id FROM incidents"), 15, "an incident")
        base = cenv.public_base(agent)
        page = await ctx.new_page()
        await page.goto(base + "/console")
        assert page.url == base + "/console/sign-in"  # no session: sent to sign in
        await shot(page, "1-sign-in")
        await page.fill("#name", "alice")
        await page.click('button:has-text("Send me a sign-in link")')
        assert "a sign-in link is on its way" in await page.inner_text("main")
        links = await wait_for(lambda: cenv.sign_in_links(receiver, "alice"), 15,
                               "alice's sign-in link")
        await page.goto(links[0])
        await shot(page, "2-confirm")
        await page.click('button:has-text("Sign in as alice")')
        assert page.url == base + "/console"
        text = await page.inner_text("main")
        assert "#1 till is down" in text and "open" in text and "Tier" in text
        await shot(page, "3-open-incident")

        await page.click('#incident-1 button:has-text("Acknowledge")')
        assert page.url == base + "/console/incidents/1"
        assert "acknowledged by alice" in await page.inner_text("#incident-1")
        await shot(page, "4-acknowledged")

        await page.fill("#cause", "The till's network cable was unplugged by the cleaner")
        await page.fill("#fix", "Plugged it back in and taped it down")
        await page.click('button:has-text("Resolve")')
        assert "resolved by alice" in await page.inner_text("#incident-1")
        await page.fill("#action-text", "Route the till cable under the counter")
        await page.select_option("#action-owner", "bob")
        await page.click('button:has-text("Add prevention action")')
        actions = await page.inner_text("main")
        assert "Route the till cable under the counter — bob · open" in actions
        await shot(page, "5-resolved")

        await page.click('a:has-text("Post-incident report")')
        report = await page.inner_text("main")
        for words in ("Customer impact", "Card payments", "unplugged by the cleaner",
                      "Route the till cable under the counter", "alice"):
            assert words in report, words
        await shot(page, "6-report")
        await page.goto(base + "/console/checks")
        assert "till" in await page.inner_text("main")
        await shot(page, "7-checks")
        await page.goto(base + "/console/on-call")
        assert "frontline" in await page.inner_text("main")
        await shot(page, "8-on-call")
        await page.goto(base + "/console/maintenance")
        await page.check("input[name=check][value=till]")
        await page.fill("#m-for", "2h")
        await page.fill("#m-reason", "New till arrives")
        await page.click('button:has-text("Start maintenance")')
        assert "New till arrives · opened by alice" in await page.inner_text("main")
        await shot(page, "9-maintenance")
        await page.goto(base + "/console/review?since=7d")
        assert "till" in await page.inner_text("main")
        await shot(page, "10-review")
    finally:
        await ctx.close()
        code = await agent.stop()
        await receiver.close()
    assert code == 0, agent.raw_log[-20:]
    rows = query(state, "SELECT actor, data FROM timeline WHERE incident_id = 1 AND kind IN "
                        "('acknowledged', 'resolved', 'action_added') ORDER BY seq")
    assert [r[0] for r in rows] == ["alice", "alice", "alice"]
    assert all('"via": "console"' in r[1] for r in rows)
