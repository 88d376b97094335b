"""The intake's parsing, mapping and transitions, without a process (pure functions)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent import alerts, config, intake
from agent.config_intake import IntakeConfig, Webhook
from agent.incidents import State
from agent.vocab import Event
from notifiers import messages

CFG = IntakeConfig(policy="oncall", policies=frozenset({"oncall", "db-team"}), max_alerts=3)
T0 = "2026-03-01T10:00:00.123456789Z"
T0_UNIX = 1772359200.123456


def am_alert(status: str = "firing", fingerprint: str = "a1b2c3d4e5f60718",
             starts: str = T0, **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": "ShopDown", **labels},
            "annotations": {"summary": "The shop answers 500", "description": "5xx > 50%"},
            "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-01T10:05:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up", "fingerprint": fingerprint}


def am_body(*alerts_: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {"receiver": "onwatch", "status": status, "alerts": list(alerts_),
            "groupLabels": {"alertname": "ShopDown"}, "commonLabels": {"alertname": "ShopDown"},
            "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "version": "4",
            "groupKey": '{}:{alertname="ShopDown"}', "truncatedAlerts": 0}


def test_an_alertmanager_alert_maps_to_one_event() -> None:
    [ev] = intake.alertmanager(am_body(am_alert(severity="critical", team="web")), CFG)
    assert ev.key == "alertmanager:a1b2c3d4e5f60718" and ev.source == "alertmanager"
    assert ev.firing and ev.title == "The shop answers 500" and ev.reason == "5xx > 50%"
    assert ev.severity == "critical" and ev.policy is None and ev.notes == ()
    assert dict(ev.labels) == {"alertname": "ShopDown", "severity": "critical", "team": "web"}
    assert ev.starts_at == pytest.approx(T0_UNIX, abs=1e-6) and ev.ends_at is None


@pytest.mark.parametrize(("labels", "severity", "policy", "noted"), [
    ({"severity": "warning"}, "high", None, False),
    ({"severity": "PAGE"}, "critical", None, False),
    ({"severity": "info"}, "low", None, False),
    ({"severity": "sev9"}, "high", None, True),  # unknown value: default, noted
    ({}, "high", None, True),  # no severity label
    ({"severity": "low", "onwatch_policy": "db-team"}, "low", "db-team", False),
    ({"severity": "low", "onwatch_policy": "nobody"}, "low", None, True),  # unknown policy
    ({"severity": "low", "rack": "b7", "unrelated_label": "x"}, "low", None, False),
])
def test_labels_map_through_the_documented_table(labels: dict[str, str], severity: str,
                                                  policy: str | None, noted: bool) -> None:
    [ev] = intake.alertmanager(am_body(am_alert(**labels)), CFG)
    assert (ev.severity, ev.policy, bool(ev.notes)) == (severity, policy, noted)
    assert all(ev.labels[k] == v for k, v in labels.items())  # unknown labels are kept


def test_several_alerts_for_one_key_are_one_event_the_last_wins() -> None:
    body = am_body(am_alert(), am_alert("resolved"), am_alert(fingerprint="ffff000011112222"))
    events = intake.alertmanager(body, CFG)
    assert [(e.key[-4:], e.firing) for e in events] == [("0718", False), ("2222", True)]


def test_group_mode_makes_the_notification_one_incident() -> None:
    cfg = IntakeConfig(policy="oncall", policies=frozenset({"oncall"}), key_by="group")
    body = am_body(am_alert(instance="a"), am_alert(fingerprint="ff", instance="b"))
    [ev] = intake.alertmanager(body, cfg)
    assert ev.key.startswith("alertmanager-group:") and ev.firing
    assert ev.title == "The shop answers 500 (2 alerts)"
    [done] = intake.alertmanager({**body, "status": "resolved"}, cfg)
    assert done.key == ev.key and not done.firing


@pytest.mark.parametrize(("body", "says"), [
    ([], "the body: expected a JSON object"),
    ({"version": "3", "alerts": [am_alert()]}, 'version: expected "4"'),
    ({"alerts": []}, "alerts: expected a non-empty list"),
    (am_body(*[am_alert(fingerprint=str(i)) for i in range(4)]), "4 alerts in one request, "
                                                                "at most 3"),
    (am_body({**am_alert(), "status": "burning"}), 'alerts[0].status: must be "firing"'),
    (am_body({**am_alert(), "labels": {}}), "alerts[0].labels: an alert needs at least one"),
    (am_body({**am_alert(), "labels": {"0bad": "x"}}), "is not a label name"),
    (am_body({**am_alert(), "labels": {"a": 1}}), "alerts[0].labels.a: must be a string"),
    (am_body({**am_alert(), "startsAt": "yesterday"}), "alerts[0].startsAt: 'yesterday' is not"),
    (am_body({**am_alert(), "startsAt": None}), "alerts[0].startsAt: required"),
    (am_body({**am_alert(), "startsAt": "2026-03-01T10:00:00"}), "has no time zone offset"),
    (am_body(am_alert(), "not an alert"), "alerts[1]: expected a JSON object"),  # type: ignore[arg-type]
])
def test_malformed_alertmanager_bodies_name_the_field(body: Any, says: str) -> None:
    with pytest.raises(intake.IntakeError, match=None) as err:
        intake.alertmanager(body, CFG)
    assert says in str(err.value)


def test_a_missing_fingerprint_is_derived_from_the_labels() -> None:
    raw = {k: v for k, v in am_alert(job="shop").items() if k != "fingerprint"}
    [a] = intake.alertmanager(am_body(raw), CFG)
    [b] = intake.alertmanager(am_body(dict(raw, labels={"job": "shop", "alertname": "ShopDown"})),
                              CFG)
    assert a.key == b.key and len(a.key) == len("alertmanager:") + 16


def test_the_generic_webhook_body() -> None:
    hook = Webhook("backups", severity="low", policy="db-team")
    [ev] = intake.webhook({"title": "nightly backup failed", "reason": "disk full",
                           "labels": {"host": "nas"}}, hook, CFG, now=100.0)
    assert (ev.key, ev.source, ev.firing, ev.severity, ev.policy, ev.starts_at) == (
        "webhook:backups:nightly backup failed", "backups", True, "low", "db-team", 100.0)
    [done] = intake.webhook({"title": "nightly backup failed", "status": "resolved"}, hook, CFG,
                            now=200.0)
    assert done.key == ev.key and not done.firing
    for body, says in (({}, "title: required"), ({"title": "x", "colour": "red"},
                                                 "colour: unknown field"),
                       ({"title": "x", "severity": "urgent"}, "severity: must be one of"),
                       ({"title": "x", "status": "up"}, 'status: must be "firing"')):
        with pytest.raises(intake.IntakeError) as err:
            intake.webhook(body, hook, CFG, now=1.0)
        assert says in str(err.value)


# -- transitions ----------------------------------------------------------------------


def _ev(firing: bool = True, starts: float = 1000.0) -> intake.AlertEvent:
    [ev] = intake.alertmanager(am_body(am_alert("firing" if firing else "resolved")), CFG)
    return replace(ev, starts_at=starts)


def test_firing_opens_then_resends_are_duplicates_and_resolved_resolves() -> None:
    tr, outcome = alerts.on_alert(None, _ev(), now=1010.0, new_id=7)
    assert outcome == "opened" and tr is not None and tr.notify == "opened"
    inc = tr.incident
    assert (inc.id, inc.kind, inc.key, inc.started_at, inc.opened_at, inc.check) == (
        7, "alert", "alertmanager:a1b2c3d4e5f60718", 1000.0, 1010.0, None)
    assert alerts.on_alert(inc, _ev(), now=1070.0, new_id=8) == (None, "duplicate")
    tr2, outcome2 = alerts.on_alert(inc, _ev(False), now=1100.0, new_id=8)
    assert outcome2 == "resolved" and tr2 is not None
    assert tr2.incident.state is State.RESOLVED and tr2.incident.resolved_by == "alertmanager"
    done = tr2.incident
    assert alerts.on_alert(done, _ev(False), now=1160.0, new_id=8) == (None, "ignored")
    # A late re-send of the old episode's firing does not reopen it ...
    assert alerts.on_alert(done, _ev(), now=1200.0, new_id=8) == (None, "duplicate")
    # ... a new episode is a new incident.
    tr3, outcome3 = alerts.on_alert(done, _ev(starts=1500.0), now=1501.0, new_id=8)
    assert outcome3 == "opened" and tr3 is not None and tr3.incident.id == 8


def test_resolved_before_firing_is_ignored_and_a_refire_updates_without_paging() -> None:
    assert alerts.on_alert(None, _ev(False), now=5.0, new_id=1) == (None, "ignored")
    tr, _ = alerts.on_alert(None, _ev(), now=1001.0, new_id=1)
    assert tr is not None
    tr2, outcome = alerts.on_alert(tr.incident, _ev(starts=2000.0), now=2001.0, new_id=2)
    assert outcome == "updated" and tr2 is not None and tr2.notify is None
    assert tr2.incident.started_at == 2000.0 and tr2.entries[0].kind == "alert_refired"
    # The resolution of the older episode no longer resolves the newer one.
    assert alerts.on_alert(tr2.incident, _ev(False, starts=1000.0), now=2002.0,
                           new_id=2) == (None, "ignored")


def test_intake_config_is_validated(tmp_path: Path) -> None:
    raw = {"policies": [{"name": "p", "steps": [{"notify": ["a"]}]}],
           "contacts": [{"name": "a", "urls": ["json://127.0.0.1:9/x"]}],
           "intake": {"token": "short", "policy": "nope", "key_by": "label",
                      "severities": {"sev1": "urgent"}, "max_alerts": 0,
                      "webhooks": [{"name": "alertmanager"}, {"name": "ok", "colour": 1}]}}
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw, tmp_path / "c.toml")
    text = "\n".join(err.value.problems)
    for says in ("intake: token: must be at least 16", 'intake: policy: no policy named "nope"',
                 "intake: key_by: must be one of alert, group",
                 "intake: severities.sev1: must be one of critical, high, low",
                 "intake: max_alerts: must be between 1 and 10000",
                 'intake.webhooks[0] "alertmanager": name: "alertmanager" is taken',
                 'intake.webhooks[1] "ok": unknown key'):
        assert says in text, text


def test_an_alert_page_says_alert_and_carries_its_labels() -> None:
    [ev] = intake.alertmanager(am_body(am_alert(severity="critical", job="shop")), CFG)
    tr = alerts.opened(ev, now=T0_UNIX + 5, new_id=4)
    m = messages.render(Event.PAGE, tr.incident, target="", link="http://x/ack/t",
                        reason="step 1 of 2", tz=ZoneInfo("UTC"), now=T0_UNIX + 5)
    assert m.title == "[ALERT] The shop answers 500 - incident #4"
    assert "Labels: alertname=ShopDown, job=shop, severity=critical\n" in m.body
    assert "Reason: 5xx > 50%" in m.body and "Since: 2026-03-01 10:00:00 UTC" in m.body
