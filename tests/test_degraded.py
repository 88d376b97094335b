"""Degraded detection on synthetic series: a sustained slow-down opens, a spike does
not, the return to normal recovers; a fall counts for observations only; and the
decision path's invariants (constant memory, the same decisions at two sampling rates)."""

from __future__ import annotations

import json
import math
import random
import re

from agent.detect import learned
from agent.detect.degraded import DegradedParams, DegradedState, observe
from agent.detect.pipeline import CheckState

DAY = 86400.0

#: A day and a bit at one run every 30 s: the baseline's warm-up is a day.
LEARN = 3000


def feed(values: list[float], start: float = 0.0, step: float = 30.0) -> list[tuple[int, str]]:
    st, out = DegradedState(), []
    for i, v in enumerate(values):
        change = observe(st, start + i * step, v)
        if change:
            out.append((i, change.kind))
    return out


def noise(n: int, level: float, rng: random.Random) -> list[float]:
    return [max(0.001, rng.gauss(level, level * 0.05)) for _ in range(n)]


def test_sustained_slowdown_is_degraded_then_recovers() -> None:
    rng = random.Random(7)
    values = noise(LEARN, 0.150, rng) + noise(60, 0.900, rng) + noise(200, 0.150, rng)
    got = feed(values)
    # Confirmed after sustain_s (10 min: 20 runs of 30 s), and recovered as long after.
    assert got and got[0][1] == "degraded" and LEARN + 20 <= got[0][0] <= LEARN + 25
    assert any(k == "recovered" and LEARN + 80 <= i <= LEARN + 85 for i, k in got)


def test_a_spike_shorter_than_sustain_is_not_degraded() -> None:
    rng = random.Random(8)
    values = [*noise(LEARN, 0.15, rng), *[2.0] * 10, *noise(200, 0.15, rng)]
    assert [k for _, k in feed(values)] == []


def test_quiet_noise_stays_quiet() -> None:
    rng = random.Random(9)
    assert feed(noise(4 * LEARN, 0.150, rng)) == []


def test_reason_names_baseline_and_level() -> None:
    rng = random.Random(10)
    st = DegradedState()
    reasons = []
    for i, v in enumerate(noise(LEARN, 0.150, rng) + noise(30, 0.900, rng)):
        change = observe(st, i * 30.0, v)
        if change:
            reasons.append(change.reason)
    assert reasons and re.fullmatch(r"baseline 1[45]\d ms, now (8|9)\d\d ms over the last 21 runs",
                                    reasons[0]), reasons


def test_a_fall_counts_for_an_observation_not_for_the_response_time() -> None:
    rng = random.Random(11)
    values = noise(LEARN, 40.0, rng) + noise(60, 5.0, rng) + noise(200, 40.0, rng)
    assert [k for _, k in feed(values)] == []  # faster is no problem
    st, got = DegradedState(), []
    for i, v in enumerate(values):
        change = observe(st, i * 30.0, v, unit="", params=DegradedParams(falls=True))
        if change:
            got.append((i, change.kind, change.reason))
    assert [k for _, k, _ in got] == ["degraded", "recovered"], got
    assert LEARN + 20 <= got[0][0] <= LEARN + 25
    assert re.search(r"baseline 4\d, now [45]\.\d", got[0][2]), got


def test_after_a_recovery_only_a_red_score_starts_again() -> None:
    """Two slow-downs an hour apart: the second is an aftershock of the first (its scores
    are capped below red by the baseline's hold-off) and pages again only without the
    quiet period."""
    rng = random.Random(12)
    spell = noise(60, 0.9, rng) + noise(120, 0.15, rng)
    values = noise(LEARN, 0.15, rng) + spell + spell + noise(100, 0.15, rng)

    def opened(params: DegradedParams) -> int:
        st, n = DegradedState(), 0
        for i, v in enumerate(values):
            change = observe(st, i * 30.0, v, params=params)
            n += change is not None and change.kind == "degraded"
        return n

    assert opened(DegradedParams()) == 1
    assert opened(DegradedParams(quiet_s=0.0)) == 2


def test_decision_state_is_constant_over_a_million_samples() -> None:
    """The decision path (baseline + a dozen numbers) is as large after a million runs,
    with slow-downs opening and recovering on the way, as after a day and a half."""
    rng = random.Random(13)
    st = DegradedState()
    gauss, changes = rng.gauss, 0
    for i in range(1_000_000):
        slow = 5.0 if i % 50_000 >= 49_900 else 1.0  # 50 minutes slow, now and then
        changes += observe(st, i * 30.0, slow * max(0.01, gauss(0.15, 0.01))) is not None
        if i == 4320:
            small = json.dumps(learned.save(_wrap(st)))
    assert changes >= 10  # it did open and recover on the way
    assert len(json.dumps(learned.save(_wrap(st)))) < 1.2 * len(small)
    assert not hasattr(st, "__dict__")


def _wrap(st: DegradedState) -> CheckState:
    return CheckState(baselines={"response time": st})


def _shape(t: float) -> tuple[float, float]:
    """(response time, an observation) as functions of time alone: a daily rhythm and
    ripples; the response time 4x slower from day 3 at 10:00 for 6 hours, and the
    observation down to a fifth from day 4 at 15:00 for 2 hours."""
    rhythm = 1.0 + 0.3 * max(0.0, math.sin(2 * math.pi * t / DAY))
    ripple = 0.03 * math.sin(t / 170.0) + 0.02 * math.sin(t / 1130.0 + 1.0)
    latency, obs = 0.150 * rhythm + 0.150 * ripple, 40.0 * rhythm + 40.0 * ripple
    if 3 * DAY + 10 * 3600 <= t < 3 * DAY + 16 * 3600:
        latency *= 4.0
    if 4 * DAY + 15 * 3600 <= t < 4 * DAY + 17 * 3600:
        obs /= 5.0
    return latency, obs


def _openings(step: float) -> list[tuple[str, float]]:
    rt, ob = DegradedState(), DegradedState()
    out = []
    for i in range(int(6 * DAY / step)):
        t = i * step
        latency, obs = _shape(t)
        for name, st, value, params in (("rt", rt, latency, DegradedParams()),
                                        ("obs", ob, obs, DegradedParams(falls=True))):
            change = observe(st, t, value, params=params)
            if change is not None and change.kind == "degraded":
                out.append((name, t))
    return out


def test_same_shape_at_two_sampling_rates_opens_the_same_incidents() -> None:
    """Constants are durations: at a 30 s interval the decisions are those at 5 min."""
    fast, slow = _openings(30.0), _openings(300.0)
    assert [n for n, _ in slow] == ["rt", "obs"], slow
    assert [n for n, _ in fast] == [n for n, _ in slow], (fast, slow)
    for (_, a), (_, b) in zip(fast, slow, strict=True):
        assert abs(a - b) <= 600.0, (fast, slow)


def test_a_slow_down_is_judged_against_the_spread_from_before_it() -> None:
    """A jittery check 3x slower for 2 hours: the score starts a candidate only an hour
    in, when the slow runs have widened the recent spread; against the calm spread from
    before, the slow-down is confirmed, against its own noise it is not."""
    from benchmarks.false_pages import healthy_web_check

    def opened(params: DegradedParams) -> int:
        st, n = DegradedState(), 0
        for t, ok, value in healthy_web_check(random.Random(1), 4, slow=3.0):
            if ok:
                change = observe(st, t, value, params=params)
                n += change is not None and change.kind == "degraded"
        return n

    assert opened(DegradedParams()) == 1
    assert opened(DegradedParams(calm_halflife_s=0.0)) == 0
