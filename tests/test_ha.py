"""Leader and standby with real processes on the machine's PostgreSQL (agent/leader.py).

Two agents ("a" starts first and leads, "b" stands by), each with its own state
directory, one fresh database per test. The policy: step 1 pages alice at once,
step 2 pages the owner STEP2_AFTER s after the incident opened. The check is a
TCP port nothing listens on, so the incident opens on the first run.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from tests.pg import Proxy
from tests.support import AgentProcess, Receiver, free_port, start_agent, wait_for

STEP2_AFTER = 8.0
#: What the issue allows between step 2's due time and its page after a failover.
FAILOVER_BUDGET_S = 15.0


def config(state: Path, url: str, receiver: Receiver, *, dead_port: int, name: str,
           send_timeout: str = "10s") -> str:
    base = f"json://127.0.0.1:{receiver.port}"
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
store = "{url}"
instance = "{name}"

[notifications]
send_timeout = "{send_timeout}"

[[contacts]]
name = "alice"
urls = ["{base}/alice"]

[[contacts]]
name = "owner"
urls = ["{base}/owner"]

[[policies]]
name = "chain"
ack_timeout = "off"
[[policies.steps]]
notify = ["alice"]
[[policies.steps]]
after = "{STEP2_AFTER:g}s"
notify = ["owner"]

[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {dead_port}
interval = "1s"
timeout = "500ms"
confirm = 1
policy = "chain"
"""


def to(receiver: Receiver, who: str) -> list[dict[str, Any]]:
    return [m for m in receiver.messages if m["_path"] == f"/{who}"]


def message_id(msg: dict[str, Any]) -> str:
    found = re.search(r"Message id: (\S+)", msg["message"])
    assert found, msg["message"]
    return found.group(1)


def sql(url: str, text: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(text, args).fetchall()


async def role(agent: AgentProcess) -> str:
    _, body = await agent.get("/healthz")
    return str(json.loads(body)["role"])


async def pair(tmp_path: Path, url: str, receiver: Receiver, **kw: Any
               ) -> tuple[AgentProcess, AgentProcess]:
    port = free_port()
    agents = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        agents.append(await start_agent(
            config(home / "state", url, receiver, dead_port=port, name=name, **kw), home))
    a, b = agents
    assert (await role(a), await role(b)) == ("leader", "standby")
    assert await a.metric("onwatch_leader") == 1 and await b.metric("onwatch_leader") == 0
    return a, b


async def _count(receiver: Receiver, who: str, n: int) -> bool:
    return len(to(receiver, who)) >= n


def opened_at(url: str) -> float:
    return float(sql(url, "SELECT opened_at FROM incidents WHERE id = 1")[0][0])


async def test_standby_pages_step_2_once_when_the_leader_is_killed(tmp_path: Path,
                                                                   pg_url: str) -> None:
    receiver = await Receiver().start()
    a, b = await pair(tmp_path, pg_url, receiver)
    try:
        await wait_for(lambda: _count(receiver, "alice", 1), 15, "step 1 to alice")
        due = opened_at(pg_url) + STEP2_AFTER
        await asyncio.sleep(max(0.0, due - 1.5 - time.time()))  # just before step 2
        assert to(receiver, "owner") == []
        await a.stop(signal.SIGKILL)
        await wait_for(lambda: _count(receiver, "owner", 1), due + FAILOVER_BUDGET_S - time.time(),
                       "step 2 paged by the standby")
        late = time.time() - due
        assert late < FAILOVER_BUDGET_S, f"step 2 came {late:.1f} s after it was due"
        await b.event("leadership_taken")
        await asyncio.sleep(2.0)  # a second page would come within this
        assert len(to(receiver, "owner")) == 1 and len(to(receiver, "alice")) == 1
        assert await role(b) == "leader" and await b.metric("onwatch_leader") == 1
    finally:
        await b.stop()
        await receiver.close()


async def test_a_delivery_cut_by_kill_is_repeated_at_most_once_with_its_id(
        tmp_path: Path, pg_url: str) -> None:
    receiver = Receiver(hang=asyncio.Event())
    receiver.hang.set()  # alice's service takes the page and never answers
    await receiver.start()
    a, b = await pair(tmp_path, pg_url, receiver, send_timeout="30s")
    try:
        await wait_for(lambda: _count(receiver, "alice", 1), 15, "step 1 in flight")
        await a.stop(signal.SIGKILL)  # while the delivery is under way
        receiver.hang.clear()
        await wait_for(lambda: _count(receiver, "alice", 2), FAILOVER_BUDGET_S,
                       "the cut delivery repeated by the new leader")
        await asyncio.sleep(2.0)
        ids = {message_id(m) for m in to(receiver, "alice")}
        assert len(to(receiver, "alice")) == 2 and len(ids) == 1
        assert sql(pg_url, "SELECT status FROM outbox WHERE contact = 'alice'") == \
            [("delivered",)]
    finally:
        await b.stop()
        await receiver.close()


async def test_a_paused_leader_pages_nothing_after_it_wakes(tmp_path: Path,
                                                            pg_url: str) -> None:
    receiver = await Receiver().start()
    a, b = await pair(tmp_path, pg_url, receiver)
    try:
        await wait_for(lambda: _count(receiver, "alice", 1), 15, "step 1 to alice")
        due = opened_at(pg_url) + STEP2_AFTER
        a.proc.send_signal(signal.SIGSTOP)  # longer than the lease, past step 2's due time
        await wait_for(lambda: _count(receiver, "owner", 1), due + FAILOVER_BUDGET_S - time.time(),
                       "step 2 paged by the standby")
        await asyncio.sleep(max(0.0, due + 1.0 - time.time()))
        a.proc.send_signal(signal.SIGCONT)  # step 2 is overdue in its timers now
        await a.event("leadership_lost", timeout=10.0)
        await asyncio.sleep(2.0)
        assert len(to(receiver, "owner")) == 1 and len(to(receiver, "alice")) == 1
        assert (await role(a), await role(b)) == ("standby", "leader")
        epochs = sql(pg_url, "SELECT epoch, holder FROM onwatch_leader")
        assert epochs[0][1] == "b"
    finally:
        await a.stop()
        await b.stop()
        await receiver.close()


async def test_an_ack_through_the_standby_stops_the_leaders_next_step(tmp_path: Path,
                                                                      pg_url: str) -> None:
    receiver = await Receiver().start()
    a, b = await pair(tmp_path, pg_url, receiver)
    try:
        await wait_for(lambda: _count(receiver, "alice", 1), 15, "step 1 to alice")
        link = re.search(r"Acknowledge: (\S+)", to(receiver, "alice")[0]["message"])
        assert link and link.group(1).startswith(a.base_url + "/ack/")
        on_standby = link.group(1).replace(a.base_url, b.base_url)
        async with aiohttp.ClientSession() as s, s.post(on_standby) as r:
            assert r.status == 200, await r.text()
            assert "Acknowledged" in await r.text()
        assert sql(pg_url, "SELECT state, acknowledged_by FROM incidents") == \
            [("acknowledged", "alice")]
        await a.event("relayed_action_applied")
        due = opened_at(pg_url) + STEP2_AFTER
        await asyncio.sleep(max(0.0, due + 1.5 - time.time()))  # past step 2's due time
        assert to(receiver, "owner") == []
        assert await role(a) == "leader"
        # The API on the standby: a note, then the resolution, applied by the leader.
        token = (tmp_path / "b" / "state" / "api.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=auth) as s:
            async with s.post(f"{b.base_url}/api/v1/incidents/1/notes",
                              json={"text": "router rebooted", "by": "bob"}) as r:
                assert r.status == 200, await r.text()
            async with s.post(f"{b.base_url}/api/v1/incidents/1/resolve",
                              json={"by": "bob", "cause": "router", "fix": "reboot"}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["state"] == "resolved"
            async with s.post(f"{b.base_url}/api/v1/incidents/1/ack", json={"by": "x"}) as r:
                assert r.status == 409  # the leader's refusal, with its message
                assert "already resolved" in (await r.json())["error"]
        notes = sql(pg_url, "SELECT actor, message FROM timeline WHERE kind = 'note'")
        assert ("bob", "router rebooted") in notes
    finally:
        await a.stop()
        await b.stop()
        await receiver.close()


async def test_a_leader_cut_from_the_database_becomes_the_standby(tmp_path: Path,
                                                                  pg_url: str) -> None:
    receiver = await Receiver().start()
    a, b = await pair(tmp_path, pg_url, receiver)
    try:
        cut = sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'onwatch-lock a'")
        assert cut == [(True,)]
        await wait_for(lambda: _roles_are(a, b, "standby", "leader"), FAILOVER_BUDGET_S,
                       "b leading and a standing by")
        assert sql(pg_url, "SELECT holder FROM onwatch_leader") == [("b",)]
        assert await a.metric("onwatch_leader") == 0 and await b.metric("onwatch_leader") == 1
    finally:
        await a.stop()
        await b.stop()
        await receiver.close()


async def _roles_are(a: AgentProcess, b: AgentProcess, ra: str, rb: str) -> bool:
    return (await role(a), await role(b)) == (ra, rb)


async def test_a_database_outage_leaves_the_leader_paging_from_memory(tmp_path: Path,
                                                                      pg_url: str) -> None:
    """PostgreSQL unreachable (a relay in front of it cut): nobody can take over, so the
    leader detects, opens and pages from memory, says so, and stores it all afterwards."""
    receiver = await Receiver().start()
    target = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    proxy = await Proxy().start()
    home = tmp_path / "a"
    home.mkdir()
    agent = await start_agent(config(home / "state", proxy.url(pg_url), receiver,
                                     dead_port=port, name="a"), home)
    try:
        assert await role(agent) == "leader"
        await proxy.cut()
        target.close()  # the shop goes down while the database is unreachable
        await wait_for(lambda: _count(receiver, "alice", 1), 15, "alice paged from memory")
        await agent.event("store_write_failed")
        status, body = await agent.get("/healthz")
        health = json.loads(body)
        assert (status, health["status"], health["role"]) == (503, "store_failing", "leader")
        assert sql(pg_url, "SELECT count(*) FROM incidents") == [(0,)]
        await proxy.restore()
        await wait_for(lambda: _stored(pg_url), 20, "the incident written once it is back")
        assert sql(pg_url, "SELECT status FROM outbox WHERE contact = 'alice'") == \
            [("delivered",)]
        assert sql(pg_url, "SELECT holder FROM onwatch_leader") == [("a",)]
        await asyncio.sleep(1.0)
        assert len(to(receiver, "alice")) == 1  # not sent again from the store
        assert await role(agent) == "leader"
    finally:
        await agent.stop()
        await proxy.cut()
        await receiver.close()


async def _stored(url: str) -> bool:
    return sql(url, "SELECT count(*) FROM incidents") == [(1,)]
