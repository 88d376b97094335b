"""onwatch with a real Prometheus and a real Alertmanager (Debian's packages).

1. Alertmanager as the source: Prometheus scrapes two targets the test makes
   fail; its rule fires; Alertmanager sends the webhook to a real
   `onwatch run`, which opens one incident per alert and pages step 1. The
   "shop" incident is acknowledged through the API; "pos" is not: only pos
   reaches step 2. The targets recover, the rule clears, Alertmanager sends
   "resolved" and both incidents resolve.
2. onwatch's own rules: the shipped rules file, loaded into Prometheus
   scraping a real agent, evaluates without error; every expression of the
   shipped dashboard parses and runs; the agent is stopped and
   OnwatchAgentDown becomes active.
3. `promtool check metrics` on a real agent's /metrics, `promtool check
   rules` on the shipped rules and `promtool test rules` with
   tests/prometheus/onwatch-rules.test.yml (each rule on made-up series).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests import promstack
from tests.promstack import Alertmanager, Prometheus
from tests.support import (
    ROOT,
    AgentProcess,
    Receiver,
    free_port,
    query,
    start_agent,
    wait_for,
)

API_TOKEN = "api-token-0123456789abcdef"
INTAKE_TOKEN = "intake-token-0123456789abcdef"
STEP2_AFTER = 6.0
RULES = ROOT / "deploy" / "prometheus" / "onwatch-rules.yml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "onwatch-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "onwatch-dashboard.json"


class Target:
    """A scrape target that answers /metrics, or 503 while `failing`."""

    def __init__(self) -> None:
        self.failing = False
        self.runner: web.AppRunner | None = None
        self.address = ""

    async def start(self) -> Target:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=503, text="down for the test")
        return web.Response(text="shop_orders_total 1\n")

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()


def agent_config(state: Path, receiver: Receiver, port: int = 0, checks: str = "") -> str:
    base = f"json://127.0.0.1:{receiver.port}"
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:{port}"
api_token = "{API_TOKEN}"
# The opt-in per-check buckets too, so that promtool sees them.
check_duration_buckets = ["10ms", "100ms", "1s"]

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

[intake]
token = "{INTAKE_TOKEN}"
policy = "chain"
{checks}"""


def observing_checks(port: int) -> str:
    """Checks whose observations cover the metric families: timings, a status, a disk."""
    return f"""
[[checks]]
name = "self"
type = "http"
url = "http://127.0.0.1:{port}/healthz"
interval = "1s"
timeout = "900ms"
phase_timings = true
fingerprint = true

[[checks]]
name = "server"
type = "host"
interval = "1s"
timeout = "900ms"
disks = ["/"]
"""


TARGET_RULES = """
groups:
  - name: targets
    rules:
      - alert: TargetDown
        expr: up{job=~"shop|pos"} == 0
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.job }} cannot be scraped"
          description: "Prometheus gets no metrics from {{ $labels.instance }}"
"""


async def api(agent: AgentProcess, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(
            method, agent.base_url + path, json=body,
            headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
        assert r.status < 300, (r.status, await r.text())
        return await r.json()


def by_job(incidents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["labels"].get("job", ""): i for i in incidents}


def to(receiver: Receiver, who: str) -> list[str]:
    return [m["title"] for m in receiver.messages if m["_path"] == f"/{who}"]


async def nothing_due(state: Path) -> bool:
    return not query(state, "SELECT 1 FROM outbox WHERE status = 'due'")


async def test_alertmanager_alerts_page_escalate_stop_on_ack_and_resolve(tmp_path: Path
                                                                         ) -> None:
    promstack.require(promstack.PROMETHEUS, promstack.ALERTMANAGER)
    receiver = await Receiver().start()
    shop, pos = await Target().start(), await Target().start()
    (tmp_path / "targets.yml").write_text(TARGET_RULES)
    agent = await start_agent(agent_config(tmp_path / "state", receiver), tmp_path)
    am = await Alertmanager.start(tmp_path, f"{agent.base_url}/api/v1/intake/alertmanager",
                                  INTAKE_TOKEN)
    prom = await Prometheus.start(tmp_path, {"shop": [shop.address], "pos": [pos.address]},
                                  rule_files=(tmp_path / "targets.yml",), alertmanager=am.url)
    try:
        async def scraped() -> bool:
            got = await prom.query('sum(up{job=~"shop|pos"})')
            return bool(got["data"]["result"]) and got["data"]["result"][0]["value"][1] == "2"

        await wait_for(scraped, 30, "Prometheus scraping both targets")
        shop.failing = pos.failing = True

        async def open_for(*jobs: str) -> dict[str, dict[str, Any]] | None:
            got = by_job((await api(agent, "GET", "/api/v1/incidents?open=1"))["incidents"])
            return got if set(jobs) <= set(got) else None

        # Acknowledged as soon as it is there: well before its step 2 is due.
        shop_inc = (await wait_for(lambda: open_for("shop"), 30, "the shop incident\n"
                                   + am.tail()))["shop"]
        await api(agent, "POST", f"/api/v1/incidents/{shop_inc['id']}/ack", {"by": "alice"})
        incidents = await wait_for(lambda: open_for("shop", "pos"), 30,
                                   "an incident per firing alert\n" + am.tail())
        for inc in incidents.values():
            assert inc["kind"] == "alert" and inc["severity"] == "critical"
            assert inc["policy"] == "chain" and inc["labels"]["alertname"] == "TargetDown"
            assert inc["title"] == f"{inc['labels']['job']} cannot be scraped"

        async def pos_escalated() -> bool:
            return any("pos" in t for t in to(receiver, "owner"))

        await wait_for(pos_escalated, 20, "step 2 (owner) paged for the unacknowledged pos")
        await wait_for(lambda: nothing_due(tmp_path / "state"), 10, "the outbox drained")
        alice, owner = to(receiver, "alice"), to(receiver, "owner")
        # One page per incident, though Alertmanager re-sent the group as it changed.
        assert sum("shop" in t for t in alice) == 1 and sum("pos" in t for t in alice) == 1, alice
        assert not any("shop" in t for t in owner), owner  # the ack stopped step 2

        shop.failing = pos.failing = False

        async def resolved() -> bool:
            got = (await api(agent, "GET", "/api/v1/incidents"))["incidents"]
            return len(got) == 2 and all(i["resolved_by"] == "alertmanager" for i in got)

        await wait_for(resolved, 30, "both incidents resolved by Alertmanager\n" + am.tail())
        for name, want in (('outcome="opened",source="alertmanager"', 2.0),
                           ('outcome="resolved",source="alertmanager"', 2.0)):
            assert await agent.metric(f"onwatch_intake_alerts_received_total{{{name}}}") == want
        assert await agent.metric(
            'onwatch_escalation_steps_total{policy="chain",step="2"}') == 1.0
        assert await agent.metric(
            'onwatch_incident_acknowledge_seconds_count{severity="critical"}') == 1.0
        assert await agent.metric('onwatch_incidents_current{state="open"}') == 0.0
    finally:
        await prom.stop()
        await am.stop()
        await agent.stop()
        await shop.close()
        await pos.close()
        await receiver.close()
        promstack.cleanup(tmp_path)


def dashboard_exprs() -> list[str]:
    """Every query of the shipped dashboard, after checking the JSON is one Grafana imports."""
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert {"type", "title", "gridPos"} <= set(p), p.get("title")
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        for t in p.get("targets", []):
            assert t["refId"] and t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(exprs) >= 20
    return exprs


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by what Grafana would put there."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$check\b", ".*", expr)


async def test_shipped_rules_and_dashboard_against_a_real_agent(tmp_path: Path) -> None:
    promstack.require(promstack.PROMETHEUS)
    receiver = await Receiver().start()
    agent = await start_agent(agent_config(tmp_path / "state", receiver), tmp_path)
    prom = await Prometheus.start(tmp_path, {"onwatch": [agent.address]}, rule_files=(RULES,))
    try:
        async def evaluated() -> list[dict[str, Any]] | None:
            rules = await prom.rules()
            up = await prom.query('up{job="onwatch"}')
            ok = up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1"
            return rules if ok and rules and all(r.get("lastEvaluation", "").startswith("2")
                                                 and r["health"] == "ok" for r in rules) else None

        rules = await wait_for(evaluated, 30, "the shipped rules evaluated on a scraped agent")
        assert {r["name"] for r in rules} >= {
            "OnwatchAgentDown", "OnwatchOutboxStuck", "OnwatchOutboxGrowing",
            "OnwatchDeliveriesFailing", "OnwatchUplinkDown", "OnwatchStoreErrors",
            "OnwatchConfigReloadFailed"}
        assert not await prom.alerts()  # a healthy agent trips none of them
        # A query of a metric that does not exist is no error, just empty: so every name
        # the rules and the dashboard use must be one the agent exports.
        _, text = await agent.get("/metrics")
        exported = {name + suffix for name in re.findall(r"^# TYPE (\w+)", text, re.M)
                    for suffix in ("", "_total", "_bucket", "_count", "_sum")}
        used = set(re.findall(r"\bonwatch_\w+", RULES.read_text() + DASHBOARD.read_text()))
        # Added by the robustness and systemd issues; tolerated until they are exported.
        assert used - exported <= {"onwatch_store_errors_total",
                                   "onwatch_config_last_reload_successful"}, used - exported
        for expr in dashboard_exprs():
            got = await prom.query(grafana_to_promql(expr))
            assert got["status"] == "success", (expr, got)
        await agent.stop()

        async def agent_down() -> bool:
            return any(a["labels"]["alertname"] == "OnwatchAgentDown"
                       and a["labels"]["instance"] == agent.address
                       and a["state"] in ("pending", "firing") for a in await prom.alerts())

        await wait_for(agent_down, 20, "OnwatchAgentDown active after the agent stopped")
    finally:
        await prom.stop()
        await agent.stop()
        await receiver.close()
        promstack.cleanup(tmp_path)


async def test_promtool_accepts_the_rules_and_the_agents_metrics(tmp_path: Path) -> None:
    code, out = await promstack.promtool("check", "rules", str(RULES))
    assert code == 0 and "SUCCESS: 9 rules found" in out, out
    # Each rule fires on the series that mean trouble and not on a healthy agent's.
    code, out = await promstack.promtool("test", "rules", str(RULE_TESTS))
    assert code == 0 and "SUCCESS" in out, out
    receiver = await Receiver().start()
    port = free_port()
    agent = await start_agent(agent_config(tmp_path / "state", receiver, port,
                                           observing_checks(port)), tmp_path)
    try:
        # An alert in, acknowledged and resolved: the incident metrics have samples.
        body = {"version": "4", "status": "firing", "alerts": [{
            "status": "firing", "labels": {"alertname": "DiskFull", "severity": "warning"},
            "annotations": {"summary": "disk full"}, "startsAt": "2026-03-01T10:00:00Z",
            "fingerprint": "0123456789abcdef"}]}
        async with aiohttp.ClientSession() as s:
            url = f"{agent.base_url}/api/v1/intake/alertmanager/{INTAKE_TOKEN}"
            async with s.post(url, json=body) as r:
                assert r.status == 200, await r.text()
                [incident] = (await r.json())["incidents"]
        await api(agent, "POST", f"/api/v1/incidents/{incident}/ack", {"by": "alice"})
        await api(agent, "POST", f"/api/v1/incidents/{incident}/resolve", {"by": "alice"})
        observed = ('onwatch_check_observation_seconds{check="self",observation="connect"}',
                    'onwatch_check_http_status_code{check="self"}',
                    'onwatch_check_disk_free_ratio{check="server",path="/"}',
                    'onwatch_check_observation_ratio{check="server",observation="memory_used"}',
                    'onwatch_check_observation_bytes{check="server",observation="own_rss"}')

        async def all_observed() -> str | None:
            _, text = await agent.get("/metrics")
            return text if all(f"\n{m} " in text for m in observed) else None

        text = await wait_for(all_observed, 20, "every observation family exported")
        code, out = await promstack.promtool("check", "metrics", stdin=text.encode())
        assert code == 0, out
        assert "onwatch_incident_resolve_seconds_bucket" in text
        assert "onwatch_check_observation{" not in text and "fingerprint" not in text
        assert await agent.metric('onwatch_check_http_status_code{check="self"}') == 200.0
    finally:
        await agent.stop()
        await receiver.close()
