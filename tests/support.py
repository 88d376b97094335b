"""Test helpers: a real `onwatch run` process, a local Apprise receiver, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent


async def wait_for(pred: Callable[[], Awaitable[Any]], timeout: float, what: str,
                   every: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy; bounded in time (and so in count)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


@dataclass
class Receiver:
    """An aiohttp app standing in for a notification service behind Apprise's json://."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    #: Per path ("/alice"): answer this status instead of `status`.
    statuses: dict[str, int] = field(default_factory=dict)
    #: While set, requests are held without an answer (a hanging service).
    hang: asyncio.Event | None = None
    #: Every request, including refused ones: (path, status answered).
    attempts: list[tuple[str, int]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Receiver:
        """Start listening (again, on the same port after `close()`)."""
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/notify"

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_path"] = request.path
        status = self.statuses.get(request.path, self.status)
        self.attempts.append((request.path, status))
        if self.hang is not None and self.hang.is_set():
            self.messages.append(body)  # it arrived; the answer never comes
            await self._released.wait()
            return web.json_response({}, status=503)
        if status < 300:
            self.messages.append(body)
        return web.json_response({}, status=status)

    def titles(self) -> list[str]:
        return [m.get("title", "") for m in self.messages]

    async def close(self) -> None:
        self._released.set()
        if self.runner:
            await self.runner.cleanup()


@dataclass
class AgentProcess:
    proc: asyncio.subprocess.Process
    config: Path
    log_lines: list[dict[str, Any]] = field(default_factory=list)
    raw_log: list[str] = field(default_factory=list)
    address: str = ""
    _reader: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.raw_log.append(text)
            with contextlib.suppress(ValueError):
                self.log_lines.append(json.loads(text))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log_lines if e.get("event") == name]

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(self.base_url + path) as r:
            return r.status, await r.text()

    async def metric(self, line_prefix: str) -> float | None:
        _, text = await self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            if self._reader:
                await asyncio.wait_for(self._reader, 5)
        return code


async def start_agent(config_text: str, tmp: Path, *, wait_started: bool = True,
                      timeout: float = 20.0) -> AgentProcess:
    cfg = tmp / "onwatch.toml"
    cfg.write_text(config_text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT), env=env)
    agent = AgentProcess(proc, cfg)
    agent._reader = asyncio.create_task(agent._read())
    if wait_started:
        async def started() -> Any:
            if proc.returncode is not None:
                raise AssertionError(f"agent exited {proc.returncode}: {agent.raw_log[-20:]}")
            return agent.events("agent_started")

        ev = await wait_for(started, timeout, "agent_started in the log")
        agent.address = ev[0]["listen"]
    return agent
