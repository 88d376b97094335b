"""Removing a person from the config ends their access: after the reload their console
session is signed out and their personal API token answers 401 (a real `onwatch run`)."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from tests import console_env as env
from tests.console_env import Browser
from tests.support import Receiver, query, start_agent, wait_for

CAROL = """
[[contacts]]
name = "carol"
urls = ["json://127.0.0.1:{port}/carol"]
"""


async def test_a_removed_person_loses_console_and_api_access(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    base_config = env.config(state, receiver, env.closed_port())
    agent = await start_agent(base_config + CAROL.format(port=receiver.port), tmp_path)
    carol = Browser.open(env.public_base(agent))
    try:
        await wait_for(lambda: query(state, "SELECT id FROM incidents"), 15, "an incident")
        created = await agent.cli("token", "create", "--for", "carol")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]

        async def api() -> int:
            async with aiohttp.ClientSession() as s, s.get(
                    agent.base_url + "/api/v1/incidents",
                    headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status

        await carol.sign_in(receiver, "carol")
        assert (await carol.get("/console/incidents/1"))[0] == 200
        assert await api() == 200
        agent.config.write_text(base_config)  # carol leaves
        agent.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: agent.events("config_reloaded"), 10, "the reload")
        status, _, headers = await carol.get("/console/incidents/1")
        assert status == 303 and headers["Location"] == "/console/sign-in"
        csrf = await carol.csrf("/console/sign-in")
        status, _, _ = await carol.post("/console/incidents/1/ack", {"csrf": csrf})
        assert status == 403
        assert await api() == 401
        assert query(state, "SELECT acknowledged_by FROM incidents WHERE id = 1") == [(None,)]
    finally:
        await carol.close()
        assert await agent.stop() == 0
        await receiver.close()
