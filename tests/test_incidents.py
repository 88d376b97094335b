"""Incident state machine: open, dedupe, resolve, on a fake clock."""

from __future__ import annotations

from agent import incidents
from agent.detect.outage import Health, Signal
from agent.incidents import State
from checks.result import ErrorKind

DOWN = Signal(Health.DOWN, "pos", 110.0, 100.0, "connection refused", ErrorKind.CONNECT)
UP = Signal(Health.UP, "pos", 200.0, 100.0, "ok", None)


def test_down_opens_an_incident_with_its_reason_and_start():
    tr = incidents.on_signal(None, DOWN, severity="critical", target="10.0.0.5:9100", now=111.0,
                             new_id=7)
    assert tr is not None and tr.notify == "opened"
    inc = tr.incident
    assert (inc.id, inc.check, inc.state, inc.severity) == (7, "pos", State.OPEN, "critical")
    assert (inc.started_at, inc.opened_at, inc.reason) == (100.0, 111.0, "connection refused")
    assert [e.kind for e in tr.entries] == ["opened"]
    assert tr.entries[0].data["target"] == "10.0.0.5:9100"


def test_down_while_open_is_deduplicated():
    first = incidents.on_signal(None, DOWN, severity="high", target="t", now=111.0, new_id=1)
    assert first is not None
    assert incidents.on_signal(first.incident, DOWN, severity="high", target="t", now=300.0,
                               new_id=2) is None


def test_up_resolves_and_records_duration():
    opened = incidents.on_signal(None, DOWN, severity="high", target="t", now=111.0, new_id=1)
    assert opened is not None
    tr = incidents.on_signal(opened.incident, UP, severity="high", target="t", now=201.0,
                             new_id=2)
    assert tr is not None and tr.notify == "resolved"
    assert tr.incident.state is State.RESOLVED
    assert (tr.incident.resolved_at, tr.incident.resolved_by) == (201.0, "onwatch")
    assert tr.entries[0].data["duration_s"] == 101.0


def test_up_without_open_incident_does_nothing():
    assert incidents.on_signal(None, UP, severity="high", target="t", now=1.0, new_id=1) is None


def test_resolving_twice_does_nothing():
    opened = incidents.on_signal(None, DOWN, severity="high", target="t", now=111.0, new_id=1)
    assert opened is not None
    done = incidents.resolve(opened.incident, now=150.0, actor="alice", note="fixed cable")
    assert done is not None
    assert done.entries[0].actor == "alice"
    assert incidents.resolve(done.incident, now=160.0, actor="bob", note="again") is None
