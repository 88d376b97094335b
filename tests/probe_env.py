"""Helpers for remote-probe tests: a switchable target, the central's config, a probe process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support import ROOT, STARTED, AgentProcess, Receiver, onwatch, wait_for


@dataclass
class Target:
    """An HTTP server whose answer a test switches between 200 and 503."""

    host: str = "127.0.0.1"
    port: int = 0
    up: bool = True
    hits: int = 0
    runner: web.AppRunner | None = field(default=None, repr=False)

    async def start(self) -> Target:
        app = web.Application()
        app.router.add_get("/", self._get)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def _get(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="shop", status=200 if self.up else 503)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()


def central_config(state: Path, receiver: Receiver, checks: str, *, listen: str = "127.0.0.1:0",
                   public: str = "", unreachable_after: str = "4s", agent_extra: str = ""
                   ) -> str:
    base = f"json://{receiver.host}:{receiver.port}"
    web_table = f'\n[web]\npublic_listen = "{public}"\n' if public else ""
    return f"""
[agent]
state_dir = "{state}"
listen = "{listen}"
{agent_extra}
{web_table}
[[contacts]]
name = "owner"
urls = ["{base}/owner"]

[[policies]]
name = "owner"
ack_timeout = "off"
[[policies.steps]]
notify = ["owner"]

[defaults]
policy = "owner"
interval = "1s"
timeout = "500ms"
confirm = 2
recover = 1
recheck_interval = "200ms"

[probes]
unreachable_after = "{unreachable_after}"
{checks}
"""


def add_probe(config: Path, name: str) -> str:
    """`onwatch probe add NAME` on the central; returns the key it printed."""
    out = onwatch("probe", "add", name, "--config", str(config))
    assert out.returncode == 0, out.stderr
    m = re.search(r'key = "(onwprobe\.[^"]+)"', out.stdout)
    assert m, out.stdout
    return m.group(1)


def probe_file(tmp: Path, name: str, central: str | list[str], key: str, *,
               report_every: str = "200ms") -> Path:
    path = tmp / f"probe-{name}.toml"
    urls = json.dumps(central)  # a TOML string or array of strings
    path.write_text(f'[probe]\nname = "{name}"\ncentral = {urls}\nkey = "{key}"\n'
                    f'state_dir = "{tmp / ("probe-" + name)}"\nreport_every = "{report_every}"\n'
                    'refresh_every = "2s"\n')
    return path


async def start_probe(cfg: Path, *, netns: str | None = None, timeout: float = 20.0
                      ) -> AgentProcess:
    """`onwatch probe --config cfg` as a real process (in network namespace `netns`)."""
    return await start_in("probe", cfg, netns, "probe_started", timeout)


async def start_in(command: str, cfg: Path, netns: str | None, ready: str,
                   timeout: float = 20.0) -> AgentProcess:
    """`onwatch COMMAND --config cfg`, in network namespace `netns` when given; returns
    once it logged `ready` (for "run": agent_started, whose address is kept)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "agent", command, "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT), env=env)
    child = AgentProcess(proc, cfg)
    STARTED.append(child)
    child._reader = asyncio.create_task(child._read())

    async def started() -> Any:
        if proc.returncode is not None:
            raise AssertionError(f"{command} exited {proc.returncode}: {child.raw_log[-20:]}")
        return child.events(ready)

    try:
        ev = await wait_for(started, timeout, f"{ready} in the log")
    except BaseException:
        await child.stop(signal.SIGKILL)
        raise
    if command == "run":
        child.address = ev[0]["listen"]
        child.state_dir = Path(ev[0]["state_dir"])
    return child


def pages(receiver: Receiver) -> list[str]:
    return [f"{m.get('title', '')}\n{m.get('message', '')}" for m in receiver.messages]
