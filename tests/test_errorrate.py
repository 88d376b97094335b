"""Error-rate baselines on synthetic run histories: a check that fails far more often
than its own normal is degraded even if it never fails `confirm` times in a row."""

from __future__ import annotations

import json
import random

import pytest

from agent.detect.errorrate import ErrorRate, ErrorRateParams
from agent.detect.snapshot import SnapshotError

DAY = 86400.0


def runs(er: ErrorRate, rng: random.Random, share: float, seconds: float, step: float,
         start: float = 0.0, *, no_streak: bool = False) -> list[tuple[float, str]]:
    """Feed runs failing at random with `share`; return (time, kind) of each change.
    With no_streak, a failure is never followed by another (it never confirms an outage)."""
    out: list[tuple[float, str]] = []
    last_failed = False
    for i in range(int(seconds / step)):
        t = start + i * step
        ok = rng.random() >= share or (no_streak and last_failed)
        last_failed = not ok
        change = er.observe(t, ok)
        if change is not None:
            out.append((t, change.kind))
    return out


@pytest.mark.parametrize("step", [30.0, 300.0])
def test_flaky_api_one_in_five_instead_of_one_in_500_is_degraded(step: float) -> None:
    rng, er = random.Random(1), ErrorRate()
    assert runs(er, rng, 1 / 500, 7 * DAY, step) == []
    assert er.normal() < 0.005
    got = runs(er, rng, 1 / 5, 6 * 3600, step, 7 * DAY, no_streak=True)
    assert got[0][1] == "degraded"
    # Within a few hours even at a 5 min interval (a run is little evidence); no
    # flapping while it lasts.
    assert got[0][0] - 7 * DAY <= 3 * 3600
    assert [k for _, k in got] == ["degraded"]
    back = runs(er, rng, 1 / 500, DAY, step, 7 * DAY + 6 * 3600)
    assert [k for _, k in back] == ["recovered"]
    assert back[0][0] - (7 * DAY + 6 * 3600) <= 6 * 3600


@pytest.mark.parametrize("share", [0.0, 1 / 500, 1 / 50, 1 / 12])
def test_a_steady_share_is_normal_however_high(share: float) -> None:
    """1 in 50 or even 1 in 12, every day for weeks: that check's normal, not a change,
    from its first day (the first day is learned, not judged)."""
    rng, er = random.Random(2), ErrorRate()
    assert runs(er, rng, share, 28 * DAY, 60.0) == []


def test_a_few_failures_are_no_rate() -> None:
    """Two failures in a row on a quiet check: an outage candidate, not an error rate."""
    er = ErrorRate()
    for i in range(2880):
        assert er.observe(i * 30.0, True) is None
    assert er.observe(2880 * 30.0, False) is None
    assert er.observe(2880 * 30.0 + 2, False) is None  # the quick re-check
    assert er.observe(2881 * 30.0, True) is None


def test_reason_names_the_share_and_the_normal() -> None:
    rng, er = random.Random(3), ErrorRate()
    runs(er, rng, 1 / 500, 7 * DAY, 60.0)
    change = None
    for i in range(600):
        change = er.observe(7 * DAY + i * 60.0, i % 4 != 0) or change
        if change:
            break
    assert change is not None and change.kind == "degraded"
    assert "normally 0." in change.reason and "recently" in change.reason, change.reason


def test_restored_snapshot_decides_the_same() -> None:
    rng = random.Random(4)
    er = ErrorRate()
    runs(er, rng, 1 / 100, 2 * DAY, 60.0)
    copy = ErrorRate.restore(json.loads(json.dumps(er.snapshot())))
    history = [(2 * DAY + i * 60.0, rng.random() >= (0.3 if i > 300 else 0.01))
               for i in range(2000)]
    assert [er.observe(t, ok) for t, ok in history] == [copy.observe(t, ok) for t, ok in history]


def test_snapshot_of_other_params_or_nonsense_is_refused() -> None:
    er = ErrorRate(params=ErrorRateParams(factor=3.0))
    with pytest.raises(SnapshotError, match="other parameters"):
        ErrorRate.restore(er.snapshot())
    data = ErrorRate().snapshot()
    state = data["state"]
    assert isinstance(state, dict)
    state["recent_fail"], state["recent_time"] = 10.0, 1.0
    with pytest.raises(SnapshotError, match="more failing"):
        ErrorRate.restore(data)


@pytest.mark.parametrize("bad", [{"factor": 0.5}, {"min_share": 1.0}, {"recent_halflife_s": 0}])
def test_params_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ErrorRateParams(**bad)


def test_the_pipeline_opens_degraded_on_an_error_rate_and_not_during_an_outage() -> None:
    from agent.detect import pipeline
    from checks.result import CheckResult, ErrorKind

    st, p = pipeline.CheckState(), pipeline.Params(baseline=True)
    rng = random.Random(6)

    def run(t: float, ok: bool) -> list[pipeline.CheckSignal]:
        result = (CheckResult(True, 0.1, "ok", checked_at=t) if ok
                  else CheckResult(False, 0.0, "HTTP 502", ErrorKind.PROTOCOL, checked_at=t))
        return list(pipeline.step(st, "checkout", result, p, now=t, hold=None).signals)

    t = 0.0
    for _ in range(3 * 2880):  # three days at 30 s, 1 in 500 failing
        t += 30.0
        assert not any(isinstance(s, pipeline.Degraded) for s in run(t, rng.random() >= 1 / 500))
    # A long hard outage: confirmed down, its failures are the outage's, not a rate.
    for _ in range(240):
        t += 30.0
        run(t, False)
    assert st.outage.health.value == "down" and not st.errors.degraded
    for _ in range(20):
        t += 30.0
        run(t, True)
    got: list[pipeline.Degraded] = []
    for i in range(240):  # two hours of 1 in 5, never twice in a row
        t += 30.0
        got += [s for s in run(t, i % 5 != 0) if isinstance(s, pipeline.Degraded)]
    assert [(s.name, s.degraded) for s in got] == [(pipeline.ERROR_RATE, True)], got
    assert got[0].any_degraded and got[0].reason.startswith("error rate: failing ")
    assert "normally 0." in got[0].reason
