"""The status page in a real browser (Playwright driving Debian's Chromium) while a real
`onwatch run` watches a target that breaks and recovers.

At 390x844 (a phone) and 1280x900: the component shows the outage with the default
notice; after a public update the update; after recovery the closing notice and the
day's bar. It must fit the phone without sideways scrolling, need no JavaScript, weigh
under 50 KB with its CSS, and have its headings and labels. Screenshots are saved under
results/status-page/ (ONWATCH_SCREENSHOTS to change) for a person to look at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests import status_env as env
from tests.status_env import Target, fetch
from tests.support import Receiver, start_agent, wait_for

SIZES = {"phone": (390, 844), "desktop": (1280, 900)}
UPDATE = "Our payment provider is restarting a server; we expect the shop back within the hour."


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


async def look(browser: Any, url: str, stage: str) -> dict[str, str]:
    """Open the page at each size, check what every size must have, save screenshots."""
    env.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    texts = {}
    for name, (w, h) in SIZES.items():
        ctx = await browser.new_context(viewport={"width": w, "height": h},
                                        java_script_enabled=False)
        page = await ctx.new_page()
        resp = await page.goto(url)
        assert resp is not None and resp.status == 200
        # No sideways scrolling on a phone; the whole thing fits its width.
        assert await page.evaluate("document.documentElement.scrollWidth") <= w
        await page.screenshot(path=str(env.SCREENSHOTS / f"{stage}-{name}.png"), full_page=True)
        texts[name] = await page.inner_text("body")
        assert await page.locator("h1").count() == 1
        assert await page.locator("label[for=email]").count() == 1
        await ctx.close()
    return texts


async def test_status_page_in_chromium(tmp_path: Path, browser: Any) -> None:
    target, receiver = Target(), await Receiver().start()
    await target.start()
    state = tmp_path / "state"
    # Card payments' tcp check watches the receiver's port: it stays up.
    agent = await start_agent(env.config(state, target, receiver_url=receiver.url,
                                         smtp_port=9, pos_port=receiver.port), tmp_path)
    try:
        base = "http://" + (state / "public.addr").read_text().strip()

        async def up() -> bool:
            return await agent.metric(f'onwatch_check_up{{check="{env.CHECK}"}}') == 1.0

        await wait_for(up, 15, "the check to be up")
        status, html, headers = await fetch(base + "/")
        assert status == 200 and "<script" not in html
        assert len(html.encode()) < 50_000, len(html.encode())
        assert "script-src" not in headers["Content-Security-Policy"]
        texts = await look(browser, base + "/", "1-operational")
        assert "All systems operational" in texts["phone"]

        await target.stop()

        async def notice() -> bool:
            return "We are investigating" in (await fetch(base + "/"))[1]

        await wait_for(notice, 20, "the default notice on the page")
        texts = await look(browser, base + "/", "2-outage")
        for text in texts.values():
            assert "Major outage" in text
            assert "We are investigating a problem with Online shop" in text

        status, _, _ = await fetch(agent.base_url + "/api/v1/incidents/1/public", "POST",
                                   json={"text": UPDATE, "by": "sam"},
                                   headers={"Authorization": f"Bearer {env.API_TOKEN}"})
        assert status == 201
        texts = await look(browser, base + "/", "3-update")
        assert all(UPDATE in t for t in texts.values())

        await target.start()

        async def closed() -> bool:
            return "has been fixed" in (await fetch(base + "/"))[1]

        await wait_for(closed, 20, "the closing notice on the page")

        async def bar() -> bool:  # the rollup is written every second in this config
            return "up</title>" in (await fetch(base + "/"))[1]

        await wait_for(bar, 10, "today's bar with its problem")
        texts = await look(browser, base + "/", "4-resolved")
        today = dt.datetime.now(ZoneInfo("Europe/Paris")).strftime("%a %-d %b")
        _, html, _ = await fetch(base + "/")
        assert f"<title>{today}: " in html  # the day's bar names the day and its uptime
        for text in texts.values():
            assert "All systems operational" in text and "has been fixed" in text
            assert UPDATE in text and "Resolved" in text
        assert len(html.encode()) < 50_000
    finally:
        code = await agent.stop()
        await receiver.close()
        await target.close()
    assert code == 0, agent.raw_log[-20:]
