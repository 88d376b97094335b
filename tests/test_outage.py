"""Outage detection scenarios on a fake clock: a run per row, no sleeping."""

from __future__ import annotations

import pytest

from agent.detect.outage import Health, OutageState, observe, restored_down
from checks.result import CheckResult, ErrorKind

OK = CheckResult(True, 0.01, "ok")
FAIL = CheckResult(False, 0.0, "connection refused", ErrorKind.CONNECT)


def run(seq: str, *, confirm: int = 3, recover: int = 2, state: OutageState | None = None):
    """Feed 'o' (ok) / 'x' (fail) runs one second apart; return (signals, rechecks, state)."""
    st = state or OutageState()
    signals, rechecks = [], []
    for i, ch in enumerate(seq):
        step = observe(st, "web", OK if ch == "o" else FAIL, confirm=confirm, recover=recover,
                       now=100.0 + i)
        st = step.state
        rechecks.append(step.recheck)
        if step.signal:
            signals.append((step.signal.kind.value, i, step.signal.since))
    return signals, rechecks, st


@pytest.mark.parametrize(
    ("seq", "confirm", "recover", "signals", "health"),
    [
        ("oooo", 3, 2, [], Health.UP),
        ("oxoo", 3, 2, [], Health.UP),  # one blip: silent
        ("oxxoxxo", 3, 2, [], Health.UP),  # streaks of two never reach three
        ("oxxx", 3, 2, [("down", 3, 101.0)], Health.DOWN),  # down since the first failure
        ("xxx", 3, 2, [("down", 2, 100.0)], Health.DOWN),  # from unknown too
        ("ox", 1, 2, [("down", 1, 101.0)], Health.DOWN),  # confirm=1 pages at once
        ("oxxxo", 3, 2, [("down", 3, 101.0)], Health.DOWN),  # one success is not recovery
        ("oxxxoo", 3, 2, [("down", 3, 101.0), ("up", 5, 101.0)], Health.UP),
        ("oxxxoxoo", 3, 2, [("down", 3, 101.0), ("up", 7, 101.0)], Health.UP),  # reset
        ("oxxxxxxxxoo", 3, 2, [("down", 3, 101.0), ("up", 10, 101.0)], Health.UP),  # no repeat
        ("oxxxo", 3, 1, [("down", 3, 101.0), ("up", 4, 101.0)], Health.UP),
        ("oxxxooxxx", 3, 2, [("down", 3, 101.0), ("up", 5, 101.0), ("down", 8, 106.0)],
         Health.DOWN),
    ],
)
def test_scenarios(seq, confirm, recover, signals, health):
    got, _, st = run(seq, confirm=confirm, recover=recover)
    assert got == signals
    assert st.health is health


def test_rechecks_only_while_confirming():
    _, rechecks, _ = run("oxxxoo")
    # after the 1st and 2nd failure: re-check; once down: normal interval;
    # after the first success while down: re-check to confirm recovery.
    assert rechecks == [False, True, True, False, True, False]


def test_restored_down_recovers_into_a_signal():
    signals, _, st = run("oo", state=restored_down(50.0))
    assert signals == [("up", 1, 50.0)]
    assert st.health is Health.UP


def test_up_hot_path_allocates_no_new_state():
    _, _, st = run("oo")
    step = observe(st, "web", OK, confirm=3, recover=2, now=1000.0)
    assert step.state is st and step.signal is None and not step.recheck
