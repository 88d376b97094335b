"""Two tenants on one real `onwatch run`: each client's person sees and acts on that client's
incidents only, in the API (personal tokens) and the console; the provider's staff see all;
each client's pages follow its own business hours; each status page shows its components.

Acme (a [[tenants]] table) is open all week; Bravo (clients/bravo.toml, through `include`)
is open on one day only, never today: the same policy shape pages Acme's day person and
Bravo's night person. Both clients have a check called "shop" of a closed loopback port.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from agent.cli_parser import EXIT_USAGE
from agent.policy import WEEKDAYS
from tests import console_env as env
from tests.console_env import Browser
from tests.support import AgentProcess, Receiver, query, start_agent, wait_for

TOKEN = env.API_TOKEN


def _tenant_tables(prefix: str, t: str, day: str, port: int, rport: int, host: str = ""
                   ) -> str:
    return f"""
[{prefix}defaults]
policy = "std"
[[{prefix}contacts]]
name = "{day}"
urls = ["json://127.0.0.1:{rport}/{t}.{day}"]
[[{prefix}contacts]]
name = "night"
urls = ["json://127.0.0.1:{rport}/{t}.night"]
[[{prefix}policies]]
name = "std"
steps = [{{ notify = ["{day}"], when = "business_hours" }},
         {{ notify = ["night"], when = "outside_business_hours" }}]
[[{prefix}checks]]
name = "shop"
type = "tcp"
host = "127.0.0.1"
port = {port}
interval = "1s"
timeout = "500ms"
confirm = 1
recover = 1
[{prefix}status]
title = "{t.title()} status"
{host}
[[{prefix}status.components]]
name = "Online shop"
checks = ["shop"]
"""


def write_config(tmp: Path, rport: int) -> str:
    ny_today = dt.datetime.now(ZoneInfo("America/New_York")).weekday()
    other_day = WEEKDAYS[(ny_today + 3) % 7]
    acme = _tenant_tables("tenants.", "acme", "ana", env.closed_port(), rport,
                          'host = "status.acme.example"')
    bravo = _tenant_tables("", "bravo", "bob", env.closed_port(), rport)
    (tmp / "clients").mkdir()
    (tmp / "clients" / "bravo.toml").write_text(
        'timezone = "America/New_York"\n'
        f'business_hours = {{ hours = ["{other_day} 00:00-24:00"] }}\n' + bravo)
    return f"""
include = ["clients/*.toml"]
[agent]
state_dir = "{tmp / 'state'}"
listen = "127.0.0.1:0"
api_token = "{TOKEN}"
timezone = "UTC"
[web]
public_listen = "127.0.0.1:0"
[[contacts]]
name = "staff"
urls = ["json://127.0.0.1:{rport}/staff"]

[[tenants]]
name = "acme"
timezone = "Europe/Berlin"
business_hours = {{ hours = ["mon-sun 00:00-24:00"] }}
{acme}"""


@dataclass
class Setup:
    agent: AgentProcess
    receiver: Receiver
    base: str
    state: Path
    ids: dict[str, int]


@pytest.fixture
async def running(tmp_path: Path, _no_agent_left_running: None) -> AsyncIterator[Setup]:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(write_config(tmp_path, receiver.port), tmp_path)
    try:
        rows = await wait_for(lambda: len(q := query(
            state, "SELECT check_name, id FROM incidents")) >= 2 and q, 15, "two incidents")
        yield Setup(agent, receiver, env.public_base(agent), state, dict(rows))
    finally:
        code = await agent.stop()
        await receiver.close()
        assert code == 0, agent.raw_log[-20:]


async def _api(agent: AgentProcess, token: str, path: str, body: dict[str, Any] | None = None
               ) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s:
        call = s.post(agent.base_url + path, json=body, headers=headers) if body is not None \
            else s.get(agent.base_url + path, headers=headers)
        async with call as r:
            return r.status, json.loads(await r.text())


async def _token(agent: AgentProcess, person: str) -> str:
    created = await agent.cli("token", "create", "--for", person)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


async def test_each_clients_pages_follow_its_own_business_hours(running: Setup) -> None:
    paths = await wait_for(lambda: len(p := {m["_path"] for m in running.receiver.messages})
                           >= 2 and p, 15, "both clients paged")
    assert paths == {"/acme.ana", "/bravo.night"}  # Acme is open; Bravo is not, today


async def test_a_clients_person_sees_and_acts_on_their_incidents_only(running: Setup) -> None:
    agent, ids = running.agent, running.ids
    acme, bravo = ids["acme.shop"], ids["bravo.shop"]
    status, body = await _api(agent, TOKEN, "/api/v1/incidents")  # the provider: all
    assert status == 200 and {i["check"] for i in body["incidents"]} == {"acme.shop",
                                                                         "bravo.shop"}
    ana = await _token(agent, "acme.ana")
    status, body = await _api(agent, ana, "/api/v1/incidents")
    assert status == 200 and [i["check"] for i in body["incidents"]] == ["acme.shop"]
    assert (await _api(agent, ana, f"/api/v1/incidents/{bravo}"))[0] == 404
    assert (await _api(agent, ana, f"/api/v1/incidents/{bravo}/ack", {}))[0] == 404
    assert (await _api(agent, ana, f"/api/v1/incidents/{bravo}/notes", {"text": "x"}))[0] == 404
    status, body = await _api(agent, ana, f"/api/v1/incidents/{acme}/ack", {})
    assert status == 200 and body["acknowledged_by"] == "acme.ana"
    # Declared by a client's person: pages with that client's policy, seen by them alone.
    status, body = await _api(agent, ana, "/api/v1/incidents", {"title": "oven broken"})
    assert status == 201 and body["policy"] == "acme.std"
    declared = body["id"]
    bob = await _token(agent, "bravo.bob")
    status, body = await _api(agent, bob, "/api/v1/incidents")
    assert [i["check"] for i in body["incidents"]] == ["bravo.shop"]
    assert (await _api(agent, bob, f"/api/v1/incidents/{declared}"))[0] == 404
    status, _ = await _api(agent, bob, "/api/v1/incidents", {"title": "x", "policy": "acme.std"})
    assert status == 403
    status, _ = await _api(agent, bob, "/api/v1/maintenance",
                           {"checks": ["acme.shop"], "for": "1h"})
    assert status == 403
    assert query(running.state, "SELECT acknowledged_by FROM incidents WHERE id = ?",
                 bravo) == [(None,)]


async def test_the_console_shows_a_clients_person_their_incidents_only(running: Setup) -> None:
    ids = running.ids
    ana, staff = Browser.open(running.base), Browser.open(running.base)
    try:
        await ana.sign_in(running.receiver, "acme.ana")
        status, html, _ = await ana.get("/console")
        assert status == 200 and "acme.shop" in html and "bravo.shop" not in html
        for path in (f"/console/incidents/{ids['bravo.shop']}",
                     f"/console/incidents/{ids['bravo.shop']}/report"):
            assert (await ana.get(path))[0] == 404
        csrf = await ana.csrf("/console")
        status, _, _ = await ana.post(f"/console/incidents/{ids['bravo.shop']}/ack",
                                      {"csrf": csrf})
        assert status == 404
        assert query(running.state, "SELECT acknowledged_by FROM incidents WHERE id = ?",
                     ids["bravo.shop"]) == [(None,)]
        status, _, _ = await ana.post(f"/console/incidents/{ids['acme.shop']}/ack",
                                      {"csrf": csrf})
        assert status == 303
        status, html, _ = await ana.get("/console/checks")
        assert "acme.shop" in html and "bravo.shop" not in html
        await staff.sign_in(running.receiver, "staff")
        status, html, _ = await staff.get("/console")
        assert "acme.shop" in html and "bravo.shop" in html
        assert (await staff.get(f"/console/incidents/{ids['bravo.shop']}"))[0] == 200
    finally:
        await ana.close()
        await staff.close()


async def _get(url: str, host: str | None = None) -> tuple[int, str]:
    headers = {"Host": host} if host else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.text()


async def test_each_clients_status_page_shows_its_components_only(running: Setup) -> None:
    base = running.base
    acme_id = running.ids["acme.shop"]

    async def told() -> Any:
        status, text = await _get(base + "/status/acme/status.json")
        doc = json.loads(text)
        return status == 200 and doc["incidents"] and doc

    doc = await wait_for(told, 15, "Acme's page telling of its outage")
    assert [c["id"] for c in doc["components"]] == ["acme--online-shop"]
    assert doc["components"][0]["state"] == "major_outage"
    assert doc["page"]["name"] == "Acme status" and doc["page"]["time_zone"] == "Europe/Berlin"
    assert [i["id"] for i in doc["incidents"]] == [str(acme_id)]
    assert doc["incidents"][0]["url"].endswith(f"/status/acme/incidents/{acme_id}")
    bravo = json.loads((await _get(base + "/status/bravo/status.json"))[1])
    assert [c["id"] for c in bravo["components"]] == ["bravo--online-shop"]
    assert [i["id"] for i in bravo["incidents"]] == [str(running.ids["bravo.shop"])]
    status, html = await _get(base + "/status/acme")
    assert status == 200 and "Acme status" in html and "Bravo" not in html
    assert f'href="/status/acme/incidents/{acme_id}"' in html
    assert (await _get(base + f"/status/acme/incidents/{running.ids['bravo.shop']}"))[0] == 404
    # On its own host name the same page, at /, its links at the root.
    status, html = await _get(base + "/", host="status.acme.example")
    assert status == 200 and "Acme status" in html and f'href="/incidents/{acme_id}"' in html
    # The provider's own page lists none of the clients' components or incidents.
    provider = json.loads((await _get(base + "/status.json"))[1])
    assert provider["components"] == [] and provider["incidents"] == []
    assert (await _get(base + "/status/nobody"))[0] == 404
    # A person's own words go on the client's page (and nowhere else).
    status, body = await _api(running.agent, TOKEN, f"/api/v1/incidents/{acme_id}/public",
                              {"text": "Ovens back by noon"})
    assert status == 201 and body["url"].endswith(f"/status/acme/incidents/{acme_id}")
    acme_page = (await _get(base + "/status/acme/status.json"))[1]
    assert "Ovens back by noon" in acme_page
    for other in ("/status/bravo/status.json", "/status.json"):
        assert "Ovens" not in (await _get(base + other))[1]


async def test_review_of_one_client(running: Setup) -> None:
    await wait_for(lambda: len({m["_path"] for m in running.receiver.messages}) >= 2, 15,
                   "both clients paged")

    async def review(*args: str) -> dict[str, Any]:
        done = await running.agent.cli("review", "--format", "json", *args)
        assert done.returncode == 0, done.stderr
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    async def paged(*args: str) -> Any:
        doc = await review(*args)
        return doc["people"] and doc

    acme = await wait_for(lambda: paged("--tenant", "acme"), 15, "Acme's page in the store")
    assert acme["tenant"] == "acme" and acme["incidents"] == 1
    assert [c["check"] for c in acme["checks"]] == ["acme.shop"]
    assert [(p["contact"], p["pages"], p["outside_hours"]) for p in acme["people"]] == [
        ("acme.ana", 1, 0)]
    bravo = await wait_for(lambda: paged("--tenant", "bravo"), 15, "Bravo's page")
    assert [c["check"] for c in bravo["checks"]] == ["bravo.shop"]
    # Bravo's night person was paged outside Bravo's business hours (by its own clock).
    assert [(p["contact"], p["pages"], p["outside_hours"]) for p in bravo["people"]] == [
        ("bravo.night", 1, 1)]
    everything = await review()
    assert everything["incidents"] == 2 and everything["tenant"] == ""
    assert {c["check"] for c in everything["checks"]} == {"acme.shop", "bravo.shop"}
    bad = await running.agent.cli("review", "--tenant", "nobody")
    assert bad.returncode == EXIT_USAGE
    assert "no tenant 'nobody'" in bad.stderr and "known: acme, bravo" in bad.stderr
