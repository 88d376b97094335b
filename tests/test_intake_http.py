"""The intake endpoints of a real `onwatch run`: tokens, bounds, bad bodies, idempotence.

Alertmanager's part is the documented webhook body (version 4) posted the
way Alertmanager posts it; the real Alertmanager is in test_prometheus.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import AgentProcess, Receiver, query, start_agent, wait_for
from tests.test_intake import am_alert, am_body

API_TOKEN = "api-token-0123456789abcdef"
TOKEN = "intake-token-0123456789abcdef"
MAX_BODY = 20000


def config(state: Path, receiver: Receiver, token: str | None = TOKEN) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
api_token = "{API_TOKEN}"

[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]

[[policies]]
name = "oncall"
[[policies.steps]]
notify = ["alice"]

[intake]
{f'token = "{token}"' if token else ""}
policy = "oncall"
max_body_bytes = {MAX_BODY}
max_alerts = 5

[[intake.webhooks]]
name = "backups"
severity = "low"
"""


async def post(agent: AgentProcess, path: str, body: Any, *, token: str | None = TOKEN,
               in_path: bool = False, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    url = f"{agent.base_url}/api/v1/intake/{path}" + (f"/{token}" if in_path else "")
    headers = {"Content-Type": "application/json"}
    if token and not in_path:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
        return r.status, await r.json()


COLUMNS = ("id", "kind", "severity", "policy", "state", "labels", "resolved_by", "title",
           "alert_key")


def incidents(state: Path) -> list[dict[str, Any]]:
    rows = query(state, f"SELECT {', '.join(COLUMNS)} FROM incidents ORDER BY id")
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


async def test_duplicates_resolved_before_firing_and_unknown_labels(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(config(state, receiver), tmp_path)
    try:
        # Resolved before it ever fired: accepted (Alertmanager must not retry), nothing opens.
        status, got = await post(agent, "alertmanager", am_body(am_alert("resolved"),
                                                                  status="resolved"))
        assert (status, got["outcomes"], incidents(state)) == (200, {"ignored": 1}, [])
        # The same alert twice in one request, then the request again (a re-send).
        body = am_body(am_alert(severity="sev9", rack="b7"), am_alert(severity="sev9", rack="b7"))
        status, got = await post(agent, "alertmanager", body)
        assert (status, got["accepted"], got["outcomes"]) == (200, 1, {"opened": 1})
        status, again = await post(agent, "alertmanager", body, in_path=True)
        assert (status, again["outcomes"], again["incidents"]) == (
            200, {"duplicate": 1}, got["incidents"])
        await wait_for(lambda: _n(receiver, 1), 10, "the page")
        # Restarted, the agent still knows the alert: Alertmanager's re-send is a duplicate.
        assert await agent.stop() == 0
        agent = await start_agent(config(state, receiver), tmp_path)
        status, again = await post(agent, "alertmanager", body)
        assert (status, again["outcomes"]) == (200, {"duplicate": 1})
        [row] = incidents(state)
        assert (row["kind"], row["severity"], row["policy"], row["state"]) == (
            "alert", "high", "oncall", "open")  # sev9 is unknown: the default severity
        assert json.loads(row["labels"]) == {"alertname": "ShopDown", "rack": "b7",
                                             "severity": "sev9"}
        async with aiohttp.ClientSession() as s, s.get(
                f"{agent.base_url}/api/v1/incidents/{row['id']}",
                headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
            timeline = (await r.json())["timeline"]
        assert any("sev9" in e["message"] and "not in [intake.severities]" in e["message"]
                   for e in timeline), timeline
        shown = await agent.cli("show", str(row["id"]))
        assert "labels:  alertname=ShopDown, rack=b7, severity=sev9" in shown.stdout, shown
        # Resolved: the incident resolves; a re-sent resolution changes nothing.
        done = am_body(am_alert("resolved"), status="resolved")
        assert (await post(agent, "alertmanager", done))[1]["outcomes"] == {"resolved": 1}
        assert (await post(agent, "alertmanager", done))[1]["outcomes"] == {"ignored": 1}
        assert incidents(state)[0]["resolved_by"] == "alertmanager"
        await wait_for(lambda: _n(receiver, 2), 10, "the resolution message")
        assert len(receiver.messages) == 2  # one page, one resolution: nothing for duplicates
        assert await agent.metric(
            'onwatch_intake_alerts_received_total{outcome="duplicate",source="alertmanager"}'
        ) == 1.0
    finally:
        await agent.stop()
        await receiver.close()


async def _n(receiver: Receiver, n: int) -> bool:
    return len(receiver.messages) >= n


async def test_wrong_tokens_oversized_and_malformed_bodies_are_refused(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(config(state, receiver), tmp_path)
    try:
        body = am_body(am_alert())
        for token, in_path in ((None, False), ("wrong-token-0123456789abcdef", False),
                               ("wrong-token-0123456789abcdef", True), (API_TOKEN, False),
                               (TOKEN[:-1], True)):
            status, got = await post(agent, "alertmanager", body, token=token, in_path=in_path)
            assert status == 401 and "wrong token" in got["error"], (token, got)
        huge = am_body(am_alert(note="x" * 1000))
        huge["alerts"][0]["annotations"]["description"] = "y" * 1999
        status, got = await post(agent, "alertmanager", None,
                                 raw=json.dumps(huge).encode() + b" " * MAX_BODY)
        assert status == 413 and f"larger than {MAX_BODY} bytes" in got["error"]
        for raw, says in ((b"{not json", "the body is not JSON"),
                          (b"\xff\xfe", "the body is not JSON"),
                          (json.dumps({"alerts": "many"}).encode(), "alerts: expected a non-empty"),
                          (json.dumps(am_body(*[am_alert(fingerprint=str(i)) for i in range(6)])
                                      ).encode(), "6 alerts in one request, at most 5"),
                          (json.dumps(am_body({**am_alert(), "startsAt": 5})).encode(),
                           "alerts[0].startsAt: expected an RFC 3339 time")):
            status, got = await post(agent, "alertmanager", None, raw=raw)
            assert status == 400 and says in got["error"], (says, got)
        assert incidents(state) == []  # nothing applied from any of them
        status, got = await post(agent, "webhook/nope", {"title": "x"})
        assert status == 404 and "[[intake.webhooks]]" in got["error"]
        assert await agent.metric(
            'onwatch_intake_requests_rejected_total{reason="unauthorized",source="alertmanager"}'
        ) == 5.0
        assert await agent.metric(
            'onwatch_intake_requests_rejected_total{reason="malformed",source="alertmanager"}'
        ) == 5.0
        assert all(TOKEN not in line for line in agent.raw_log)
    finally:
        await agent.stop()
        await receiver.close()


async def test_generic_webhook_opens_and_resolves(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    # Without [intake] token the API token guards the intake.
    agent = await start_agent(config(state, receiver, token=None), tmp_path)
    try:
        assert (await post(agent, "webhook/backups", {"title": "x"}))[0] == 401
        fired = {"title": "nightly backup failed", "reason": "disk full on nas",
                 "labels": {"host": "nas"}}
        status, got = await post(agent, "webhook/backups", fired, token=API_TOKEN, in_path=True)
        assert (status, got["outcomes"]) == (200, {"opened": 1})
        # A retry (no start time given) is the same episode; a later start is a new one.
        assert (await post(agent, "webhook/backups", fired, token=API_TOKEN)
                )[1]["outcomes"] == {"duplicate": 1}
        assert (await post(agent, "webhook/backups", {**fired, "starts_at": time.time()},
                           token=API_TOKEN))[1]["outcomes"] == {"updated": 1}
        await wait_for(lambda: _n(receiver, 1), 10, "the page")
        [row] = incidents(state)
        assert (row["title"], row["severity"], row["alert_key"]) == (
            "nightly backup failed", "low", "webhook:backups:nightly backup failed")
        status, got = await post(agent, "webhook/backups",
                                 {"title": "nightly backup failed", "status": "resolved"},
                                 token=API_TOKEN)
        assert (status, got["outcomes"]) == (200, {"resolved": 1})
        status, got = await post(agent, "webhook/backups", {"title": "x", "colour": "red"},
                                 token=API_TOKEN)
        assert status == 400 and "colour: unknown field" in got["error"]
    finally:
        await agent.stop()
        await receiver.close()
