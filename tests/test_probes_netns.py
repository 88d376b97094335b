"""Remote probes across hosts: the central, two probes and the shop in network namespaces.

    root (this test: the pager's receiver, reading the central's API)
      |
    central ---- berlin (probe)        each line a veth pair; every host has its own
      |  \\      /                      address on its loopback, routed over them
      |   shop (the website)
      |      \\
      +---- cloud (probe)

The shop is a real HTTP server in its own namespace; "down" is a cut link or
the server stopped. The central runs `onwatch run`, the probes `onwatch probe`,
each in its namespace, and nothing listens outside them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import netns
from tests.netns import Hosts, Link
from tests.probe_env import add_probe, central_config, pages, probe_file, start_in, start_probe
from tests.support import ROOT, AgentProcess, Receiver, query, wait_for

SHOP_PORT = 8080
PUBLIC_PORT = 9848


@dataclass
class World:
    hosts: Hosts
    central: AgentProcess
    probes: dict[str, AgentProcess]
    shop: asyncio.subprocess.Process
    receiver: Receiver
    state: Path
    to_shop: dict[str, Link]
    to_central: dict[str, Link]
    tmp: Path
    keys: dict[str, str]

    async def restart_probe(self, name: str) -> None:
        cfg = probe_file(self.tmp, name, f"http://{self.hosts.address['central']}:{PUBLIC_PORT}",
                         self.keys[name])
        self.probes[name] = await start_probe(cfg, netns=self.hosts.ns(name))


CHECK = """
[[checks]]
name = "shop"
type = "http"
url = "http://{shop}:{port}/"
locations = ["local", "berlin", "cloud"]
quorum = 2
"""


async def _shop(hosts: Hosts) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", hosts.ns("shop"), sys.executable, "-m", "tests.netns_target",
        hosts.address["shop"], str(SHOP_PORT), stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"ready"
    return proc


@pytest.fixture
async def world(tmp_path: Path, _no_agent_left_running: None) -> AsyncIterator[World]:
    # (Asking for the leftover killer makes it outlive this fixture: the processes
    # below are stopped here first, with their exit codes checked.)
    netns.require()
    hosts = Hosts()
    procs: list[AgentProcess] = []
    shop: asyncio.subprocess.Process | None = None
    receiver = None
    try:
        for name in ("central", "berlin", "cloud", "shop"):
            hosts.add(name)
        root = hosts.link("", "central")
        to_shop = {n: hosts.link(n, "shop") for n in ("central", "berlin", "cloud")}
        to_central = {n: hosts.link("central", n) for n in ("berlin", "cloud")}
        shop = await _shop(hosts)
        receiver = await Receiver(host=root.addr_a).start()
        state = tmp_path / "state"
        text = central_config(state, receiver, CHECK.format(shop=hosts.address["shop"],
                                                            port=SHOP_PORT),
                              listen=f"{root.addr_b}:0",
                              public=f"{hosts.address['central']}:{PUBLIC_PORT}",
                              unreachable_after="6s")
        cfg = tmp_path / "onwatch.toml"
        cfg.write_text(text)
        keys = {n: add_probe(cfg, n) for n in ("berlin", "cloud")}
        central = await start_in("run", cfg, hosts.ns("central"), "agent_started")
        procs.append(central)
        w = World(hosts, central, {}, shop, receiver, state, to_shop, to_central, tmp_path, keys)
        for name in ("berlin", "cloud"):
            await w.restart_probe(name)
            procs.append(w.probes[name])
        for name in ("local", "berlin", "cloud"):
            await wait_for(lambda n=name: central.metric(  # type: ignore[misc]
                f'onwatch_check_location_up{{check="shop",location="{n}"}}'), 20,
                f"the central hears {name}")
        yield w
        for p in w.probes.values():
            await p.stop()
        code = await central.stop()
        assert code == 0, "\n".join(central.raw_log[-15:])
    finally:
        for p in procs:
            if p.proc.returncode is None:
                await p.stop(signal.SIGKILL)
        if shop is not None and shop.returncode is None:
            shop.kill()
            await shop.wait()
        if receiver is not None:
            await receiver.close()
        hosts.close()


async def _location(w: World, loc: str, value: float) -> bool:
    got = await w.central.metric(f'onwatch_check_location_up{{check="shop",location="{loc}"}}')
    return got == value


def _incidents(w: World) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in query(w.state, "SELECT title, reason FROM incidents")]


async def test_one_location_alone_pages_nobody_all_of_them_page_once(world: World) -> None:
    w = world
    # The central's own line to the shop breaks: the probes still see it up.
    w.hosts.cut(w.to_shop["central"])
    await wait_for(lambda: _location(w, "local", 0), 20, "local confirms the shop down")
    await asyncio.sleep(2.0)  # runs go on at 1 s: nothing may open meanwhile
    assert _incidents(w) == [] and w.receiver.messages == []
    # Its line back; now one probe's line to the shop breaks, and only that.
    w.hosts.cut(w.to_shop["central"], up=True)
    await wait_for(lambda: _location(w, "local", 1), 20, "local sees it up again")
    w.hosts.cut(w.to_shop["berlin"])
    await wait_for(lambda: _location(w, "berlin", 0), 20, "berlin confirms the shop down")
    health = json.loads((await w.central.get("/healthz"))[1])
    assert health["locations"]["shop"] == {"local": "up", "berlin": "down", "cloud": "up"}
    assert health["checks_down"] == []
    await asyncio.sleep(2.0)  # runs go on at 1 s: nothing may open meanwhile
    assert _incidents(w) == [] and w.receiver.messages == []
    w.hosts.cut(w.to_shop["berlin"], up=True)
    await wait_for(lambda: _location(w, "berlin", 1), 20, "berlin sees it up again")
    # Now the shop itself goes down: every location sees it, one page names them.
    w.shop.kill()
    await w.shop.wait()
    await wait_for(lambda: _incidents(w), 20, "the shop's incident")
    await wait_for(lambda: pages(w.receiver), 10, "the page")
    await asyncio.sleep(2.0)
    assert len(_incidents(w)) == 1
    title, reason = _incidents(w)[0]
    assert "shop" in title and "down from" in reason
    assert sum(loc in reason for loc in ("local", "berlin", "cloud")) >= 2, reason
    assert len(pages(w.receiver)) == 1, pages(w.receiver)


async def test_a_probe_cut_off_is_one_location_incident_and_its_results_follow(
        world: World) -> None:
    w = world
    w.hosts.cut(w.to_central["berlin"])
    await wait_for(lambda: [t for t, _ in _incidents(w) if "unreachable" in t], 30,
                   "the location unreachable incident")
    title, reason = next((t, r) for t, r in _incidents(w) if "unreachable" in t)
    assert title == "location berlin unreachable" and "shop" in reason
    await asyncio.sleep(3.0)  # the cut goes on; the probe keeps checking and buffering
    assert [t for t, _ in _incidents(w)] == [title], "no page per check"
    late_before = await w.central.metric(
        'onwatch_probe_results_total{outcome="late",probe="berlin"}') or 0
    w.hosts.cut(w.to_central["berlin"], up=True)

    async def resolved() -> bool:
        rows = query(w.state, "SELECT state FROM incidents WHERE title = ?", title)
        return bool(rows) and rows[0][0] == "resolved"

    await wait_for(resolved, 40, "the location incident resolves when berlin reports again")
    await wait_for(lambda: _location(w, "berlin", 1), 20, "berlin counts again")
    late = await w.central.metric('onwatch_probe_results_total{outcome="late",probe="berlin"}')
    assert (late or 0) > late_before, "what berlin buffered during the cut arrived (as history)"
    assert len([m for m in pages(w.receiver) if "unreachable" in m]) >= 1
    assert not [m for m in pages(w.receiver) if "unreachable" not in m and "shop" in m.split(
        "\n")[0]], "nothing paged about the shop itself"
