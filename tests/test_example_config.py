"""The example config is what a newcomer runs first: it must show a whole incident
with no account anywhere, its page landing in the agent's own /inbox."""

from __future__ import annotations

from pathlib import Path

from tests.support import ROOT, free_port, start_agent, wait_for


async def test_example_config_pages_its_own_inbox(tmp_path: Path) -> None:
    port = free_port()
    text = (ROOT / "config.example.toml").read_text().replace("9847", str(port))
    agent = await start_agent(text, tmp_path)  # state_dir "state" is relative to the copy
    try:
        async def paged() -> bool:
            _, page = await agent.get("/inbox")
            return "[DOWN] example-broken - incident #1" in page

        await wait_for(paged, 30, "the example's page in /inbox")
        assert await agent.metric('onwatch_check_up{check="onwatch-itself"}') == 1.0
        assert await agent.metric('onwatch_check_up{check="onwatch-port"}') == 1.0
        assert await agent.metric('onwatch_check_up{check="onwatch-port-script"}') == 1.0
        assert await agent.metric('onwatch_check_up{check="example-broken"}') == 0.0
    finally:
        assert await agent.stop() == 0
    assert (tmp_path / "state" / "onwatch.db").exists()
