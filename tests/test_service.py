"""What the agent tells the outside: the dead-man heartbeat, its health, journald priorities."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent import service
from agent.store.sqlite import Store
from tests.support import ROOT, start_agent, wait_for


class DeadMan:
    """A Healthchecks-like receiver: counts GET /ping/<uuid>."""

    def __init__(self) -> None:
        self.pings: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _ping(self, request: web.Request) -> web.Response:
        self.pings.append(request.match_info["uuid"])
        return web.Response(text="OK")

    async def start(self) -> DeadMan:
        app = web.Application()
        app.router.add_get("/ping/{uuid}", self._ping)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def close(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_heartbeat_pings_only_while_healthy() -> None:
    dead_man = await DeadMan().start()
    problem: list[str | None] = [None]
    registry = CollectorRegistry()
    task = asyncio.create_task(service.heartbeat(
        f"http://127.0.0.1:{dead_man.port}/ping/abc", 0.05, lambda: problem[0], registry))
    try:
        await wait_for(lambda: (len(dead_man.pings) >= 3), 5, "three pings")
        problem[0] = "the store cannot be written: disk I/O error"
        await asyncio.sleep(0.1)  # whatever was in flight lands
        seen = len(dead_man.pings)
        await wait_for(lambda: ((registry.get_sample_value(
            "onwatch_heartbeat_pings_total", {"result": "withheld"}) or 0) >= 3), 5,
            "three withheld pings")
        assert len(dead_man.pings) == seen  # nothing sent while unhealthy
        problem[0] = None
        await wait_for(lambda: (len(dead_man.pings) > seen), 5, "pings again")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dead_man.close()
    assert set(dead_man.pings) == {"abc"}


async def test_heartbeat_failure_is_counted_not_raised() -> None:
    registry = CollectorRegistry()
    dead_man = await DeadMan().start()
    port = dead_man.port
    await dead_man.close()  # nothing listens there any more
    task = asyncio.create_task(service.heartbeat(f"http://127.0.0.1:{port}/ping/x", 0.05,
                                                 lambda: None, registry))
    try:
        await wait_for(lambda: ((registry.get_sample_value(
            "onwatch_heartbeat_pings_total", {"result": "failed"}) or 0) >= 2), 5,
            "two failed pings")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)



def test_store_problem_names_what_is_wrong(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    assert service.store_problem(Store.open(tmp_path)) is None
    problem = service.store_problem(Store.open(tmp_path, readonly=True))
    assert problem is not None and "readonly" in problem


def test_status_line() -> None:
    assert service.status_line(1, 0) == "watching 1 check, 0 open incidents"
    assert service.status_line(5, 1) == "watching 5 checks, 1 open incident"


async def test_agent_pings_its_heartbeat_url(tmp_path: Path) -> None:
    dead_man = await DeadMan().start()
    cfg = f"""
[agent]
state_dir = "{tmp_path / 'state'}"
listen = "127.0.0.1:0"
heartbeat_url_file = "beat.url"
heartbeat_interval = "10s"
[[contacts]]
name = "ops"
urls = ["json://127.0.0.1:9/ops"]
"""
    (tmp_path / "beat.url").write_text(f"http://127.0.0.1:{dead_man.port}/ping/uuid-1\n")
    agent = await start_agent(cfg, tmp_path)
    try:
        await wait_for(lambda: (dead_man.pings), 10, "the first heartbeat")
    finally:
        assert await agent.stop() == 0
        await dead_man.close()
    assert dead_man.pings[0] == "uuid-1"
    assert f":{dead_man.port}" not in "\n".join(agent.raw_log)  # the secret URL is not logged


def test_log_lines_carry_their_priority_for_journald() -> None:
    code = ("import os, sys, structlog, logging\n"
            "st = os.fstat(2); os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'\n"
            "from agent import logs; logs.configure('debug', json=True)\n"
            "log = structlog.get_logger()\n"
            "log.debug('d'); log.info('i'); log.warning('w'); log.error('e')\n"
            "logging.getLogger('aiohttp').error('lib')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    prefixes = [line[:3] for line in out.stderr.splitlines()]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>", "<3>"], out.stderr
    plain = subprocess.run([sys.executable, "-c", code.replace("os.environ['JOURNAL_STREAM']",
                                                               "_")],
                           capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert plain.stderr.startswith("{")  # not the journal: no prefix
