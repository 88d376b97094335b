"""User regular expressions run in linear time (RE2): a catastrophic pattern cannot
freeze the agent, and what RE2 cannot compile is refused at load with its key path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from agent.config import ConfigError, load
from tests.support import start_agent, wait_for

EVIL = "a" * 26 + "b"


async def _target() -> tuple[web.AppRunner, int]:
    app = web.Application()
    async def evil(_r: web.Request) -> web.Response:
        return web.Response(text=EVIL)

    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="fine")

    app.router.add_get("/evil", evil)
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def _config(state: Path, port: int) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"

[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/alice"]

[defaults]
contacts = ["alice"]
interval = "1s"
timeout = "900ms"
confirm = 1

[[checks]]
name = "evil"
type = "http"
url = "http://127.0.0.1:{port}/evil"
regex = "(a+)+$"
baseline = false

[[checks]]
name = "shop"
type = "http"
url = "http://127.0.0.1:{port}/ok"
baseline = false
"""


async def test_catastrophic_pattern_neither_times_out_nor_delays_its_neighbour(
        tmp_path: Path) -> None:
    target, port = await _target()
    agent = await start_agent(_config(tmp_path / "state", port), tmp_path)
    try:
        async def runs(check: str, result: str) -> float:
            return await agent.metric(
                f'onwatch_check_runs_total{{check="{check}",result="{result}"}}') or 0.0

        # The neighbour's schedule is the measure: one run a second. With Python's re each
        # evil run held the loop for seconds and the neighbour ran once in that time.
        started = asyncio.get_running_loop().time()
        await wait_for(lambda: _at_least(runs("shop", "ok"), 4), 8, "4 runs of shop")
        took = asyncio.get_running_loop().time() - started
        assert took < 6.5, f"4 one-second runs of the neighbour took {took:.1f}s"
        assert await runs("evil", "timeout") == 0
        assert await runs("evil", "assertion") >= 3
        status, _ = await agent.get("/healthz")
        assert status == 200
    finally:
        assert await agent.stop() == 0
        await target.cleanup()


async def _at_least(value: object, n: float) -> bool:
    return (await value) >= n  # type: ignore[misc]


@pytest.mark.parametrize(("key", "pattern", "where"), [
    ("regex", r"(a)\1", "checks[0] \"web\": regex: not a regular expression RE2 accepts"),
    ("regex", r"foo(?=bar)", "checks[0] \"web\": regex: not a regular expression RE2 accepts"),
    ("fingerprint_ignore", r"(?<!x)y",
     "checks[0] \"web\": fingerprint_ignore[0]: not a regular expression RE2 accepts"),
    ("expect_regex", r"(?!NO)OK",
     "checks[1] \"pos\": steps[2]: expect_regex: not a regular expression RE2 accepts"),
])
def test_patterns_re2_cannot_run_are_refused_at_load(tmp_path: Path, key: str, pattern: str,
                                                     where: str) -> None:
    web_extra = {"regex": f"regex = '{pattern}'",
                 "fingerprint_ignore": f"fingerprint = true\nfingerprint_ignore = ['{pattern}']"
                 }.get(key, "")
    steps = f"steps = [{{send = \"PING\"}}, {{expect_regex = '{pattern}'}}]" \
        if key == "expect_regex" else 'send = "PING"\nexpect = "PONG"'
    cfg = tmp_path / "onwatch.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp_path}"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/alice"]
[defaults]
contacts = ["alice"]
[[checks]]
name = "web"
type = "http"
url = "http://127.0.0.1:9/"
{web_extra}
[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = 9
{steps}
""")
    with pytest.raises(ConfigError) as info:
        load(cfg)
    problems = info.value.problems
    assert len(problems) == 1 and problems[0].startswith(where), problems
    assert "look-around and backreferences are not supported" in problems[0]
