"""A client's person against another client's incident, by every route that takes an id
(a real `onwatch run`, two tenants): the API and the console answer 404 and nothing
changes; the lists never name the other client's incidents, actions or windows."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from tests import console_env as env
from tests.console_env import Browser
from tests.support import Receiver, query, start_agent, wait_for
from tests.test_tenants_e2e import TOKEN, _api, _token, write_config


async def test_another_clients_incident_is_not_there_by_any_route(tmp_path: Path,
                                                                  _no_agent_left_running: None
                                                                  ) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(write_config(tmp_path, receiver.port), tmp_path)
    ana = Browser.open(env.public_base(agent))
    try:
        rows = await wait_for(lambda: len(q := query(
            state, "SELECT check_name, id FROM incidents")) >= 2 and q, 15, "two incidents")
        bravo = dict(rows)["bravo.shop"]
        # The provider's staff give Bravo a prevention action and a maintenance window.
        status, body = await _api(agent, TOKEN, f"/api/v1/incidents/{bravo}/actions",
                                  {"text": "spare cable", "owner": "bravo.bob"})
        assert status == 201
        action = body["id"]
        status, body = await _api(agent, TOKEN, "/api/v1/maintenance",
                                  {"checks": ["bravo.shop"], "for": "1h"})
        assert status == 201
        window = body["id"]
        token = await _token(agent, "acme.ana")
        for path, sent in ((f"/api/v1/incidents/{bravo}/resolve", {"cause": "x", "fix": "y"}),
                           (f"/api/v1/incidents/{bravo}/actions", {"text": "x", "owner": "y"}),
                           (f"/api/v1/incidents/{bravo}/public", {"text": "hello"}),
                           (f"/api/v1/actions/{action}/done", {})):
            assert (await _api(agent, token, path, sent))[0] == 404, path
        assert (await _api(agent, token, "/api/v1/actions"))[1] == {"actions": []}
        assert (await _api(agent, token, "/api/v1/maintenance"))[1] == {"windows": []}
        async with aiohttp.ClientSession() as s, s.delete(
                agent.base_url + f"/api/v1/maintenance/{window}",
                headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 404
        await ana.sign_in(receiver, "acme.ana")
        csrf = await ana.csrf("/console")
        form = {"csrf": csrf, "text": "x", "cause": "c", "fix": "f", "minutes": "15",
                "owner": "o"}
        for act in ("ack", "resolve", "note", "public", "escalate", "snooze", "action"):
            status, _, _ = await ana.post(f"/console/incidents/{bravo}/{act}", form)
            assert status == 404, act
        for path in (f"/console/actions/{action}/done", f"/console/maintenance/{window}/end"):
            assert (await ana.post(path, {"csrf": csrf}))[0] == 404, path
        for path in ("/console", "/console/checks", "/console/maintenance", "/console/on-call",
                     "/console/review?since=30d"):
            status, html, _ = await ana.get(path)
            assert status == 200 and "bravo" not in html.lower(), path
        assert query(state, "SELECT state, acknowledged_by FROM incidents WHERE id = ?",
                     bravo) == [("open", None)]
        assert query(state, "SELECT done_by FROM actions WHERE id = ?", action) == [(None,)]
        assert query(state, "SELECT COUNT(*) FROM timeline WHERE incident_id = ? AND kind IN "
                     "('note', 'acknowledged', 'resolved')", bravo) == [(0,)]
        assert len(query(state, 'SELECT id FROM maintenance WHERE "end" > ?',
                         time.time())) == 1
    finally:
        await ana.close()
        assert await agent.stop() == 0
        await receiver.close()
