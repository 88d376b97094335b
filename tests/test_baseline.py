"""The per-signal anomaly detector on synthetic series: quiet on noise, loud on change.

Every series is generated in the test from a seeded random source; times are
plain numbers (seconds), so no test waits for anything.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from agent.detect.baseline import Baseline, BaselineParams

MINUTE = 60.0
DAY = 86400.0
ALARM = 0.5  # a one-in-100,000 likelihood; NAB's optimised threshold is close to it


def feed(b: Baseline, values: list[float], *, start: int = 0, step: float = MINUTE) -> list[float]:
    return [b.update((start + i) * step, v) for i, v in enumerate(values)]


def noise(rng: random.Random, n: int, mean: float = 150.0, sd: float = 10.0) -> list[float]:
    return [mean + rng.gauss(0.0, sd) for _ in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_flat_noise_stays_quiet(seed: int) -> None:
    rng = random.Random(seed)
    b = Baseline()
    scores = feed(b, noise(rng, 3000))[b.params.warmup_samples :]
    assert sum(s >= ALARM for s in scores) <= 3  # at most 0.1 % of samples
    assert sorted(scores)[int(0.99 * len(scores))] < 0.3
    assert sorted(scores)[len(scores) // 2] < 0.05


def test_warmup_scores_zero() -> None:
    b = Baseline()
    rng = random.Random(1)
    scores = feed(b, noise(rng, b.params.warmup_samples))
    assert scores == [0.0] * b.params.warmup_samples


@pytest.mark.parametrize(("after", "within"), [(900.0, 1), (200.0, 5)])
def test_level_shift_is_flagged_quickly(after: float, within: int) -> None:
    """A page that went from 150 ms to 900 ms; and a shift of only 5 spreads (150 → 200)."""
    rng = random.Random(7)
    b = Baseline()
    before = 2 * 1440  # two days at one sample a minute: every bucket of the day is known
    feed(b, noise(rng, before))
    shifted = feed(b, noise(rng, within, mean=after), start=before)
    assert max(shifted) >= ALARM
    # The reason's figures at the alarm: the baseline is still the old normal,
    # the level is on its way to the new one and gets there within a few dozen samples.
    state = b.state()
    assert state["baseline"] == pytest.approx(150.0, abs=0.1 * (after - 150.0))
    assert state["level"] > 150.0 + 0.09 * (after - 150.0)
    feed(b, noise(rng, 60, mean=after), start=before + within)
    assert b.state()["level"] == pytest.approx(after, abs=10.0)


def test_spike_is_flagged() -> None:
    rng = random.Random(3)
    b = Baseline()
    feed(b, noise(rng, 2000))
    assert b.update(2000 * MINUTE, 400.0) >= ALARM


def test_alarm_marks_the_onset_not_every_sample() -> None:
    """Only the first sample of a run of alarms keeps its score."""
    rng = random.Random(5)
    b = Baseline()
    feed(b, noise(rng, 2000))
    shifted = feed(b, noise(rng, 50, mean=900.0), start=2000)
    assert sum(s >= ALARM for s in shifted) <= 2


def daily(rng: random.Random, i: int, step: float, phase: float = 0.0) -> float:
    """A response time with a daily peak of +100 around 06:00 (or shifted by `phase` days)."""
    day_fraction = i * step / DAY - phase
    return 150.0 + 100.0 * max(0.0, math.sin(2 * math.pi * day_fraction)) + rng.gauss(0.0, 5.0)


def test_daily_rhythm_is_learned() -> None:
    step = 300.0
    per_day = int(DAY / step)
    rng = random.Random(11)
    b = Baseline()
    scores = [b.update(i * step, daily(rng, i, step)) for i in range(7 * per_day)]
    # After a few days the normal daily peak is expected, not flagged.
    assert max(scores[3 * per_day :]) < ALARM
    # The profile holds the peak: at 06:00 the baseline is about 250, at 18:00 about 150.
    assert b.expected(6 * 3600.0) == pytest.approx(250.0, abs=15.0)
    assert b.expected(18 * 3600.0) == pytest.approx(150.0, abs=10.0)
    # The same peak at the wrong time of day (12 hours late) is a change of pattern.
    late = [
        b.update(i * step, daily(rng, i, step, phase=0.5))
        for i in range(7 * per_day, 8 * per_day)
    ]
    assert max(late) >= ALARM


def test_json_round_trip_gives_identical_scores() -> None:
    rng = random.Random(13)
    values = [daily(rng, i, 300.0) for i in range(4000)]
    original = Baseline()
    feed(original, values[:2000], step=300.0)
    saved = json.loads(json.dumps(original.to_json()))
    restored = Baseline.from_json(saved)
    assert restored.params == original.params
    assert restored.state() == original.state()
    after = values[2000:] + [900.0] * 20
    assert feed(restored, after, start=2000, step=300.0) == feed(
        original, after, start=2000, step=300.0
    )


def test_json_keeps_custom_params() -> None:
    params = BaselineParams(buckets_per_day=24, short_window=8, z_cap=3.0)
    b = Baseline(params=params)
    feed(b, [1.0, 2.0, 3.0])
    assert Baseline.from_json(json.loads(json.dumps(b.to_json()))).params == params


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"format": 99},
        "not a dict",
    ],
)
def test_from_json_rejects_what_it_did_not_write(broken: object) -> None:
    with pytest.raises(ValueError):
        Baseline.from_json(broken)  # type: ignore[arg-type]


def test_from_json_rejects_mismatched_lists() -> None:
    data = Baseline().to_json()
    data["bucket_mean"] = [0.0] * 3
    with pytest.raises(ValueError):
        Baseline.from_json(data)


def test_scores_always_in_unit_interval() -> None:
    rng = random.Random(17)
    b = Baseline(params=BaselineParams(warmup_samples=0))
    t = 0.0
    for i in range(20000):
        t += rng.choice([0.0, 1.0, 60.0, 3600.0, 7 * DAY])  # repeats, gaps, long gaps
        kind = i % 7
        if kind == 0:
            value = rng.lognormvariate(0.0, 6.0)  # 1e-6 .. 1e6 and beyond
        elif kind == 1:
            value = -rng.expovariate(1e-3)
        elif kind == 2:
            value = 0.0
        elif kind == 3:
            value = rng.choice([1e12, -1e12, 1e-12])
        else:
            value = rng.gauss(100.0, 1.0)
        score = b.update(t, value)
        assert 0.0 <= score <= 1.0
    for bad in (math.nan, math.inf, -math.inf):
        assert b.update(t + 1.0, bad) == 0.0


def test_non_finite_values_are_ignored() -> None:
    rng = random.Random(19)
    values = noise(rng, 500)
    with_gaps, without = Baseline(), Baseline()
    feed(without, values)
    for i, v in enumerate(values):
        with_gaps.update(i * MINUTE, v)
        if i % 50 == 0:
            with_gaps.update(i * MINUTE, math.nan)
    assert with_gaps.to_json() == without.to_json()


def test_flat_signal_that_moves_is_flagged() -> None:
    """A value that never changed has no spread; its first change must not divide by zero."""
    b = Baseline()
    assert max(feed(b, [45.0] * 1000)) < 0.1
    assert b.update(1000 * MINUTE, 46.0) >= ALARM


def test_memory_is_constant() -> None:
    rng = random.Random(23)
    b = Baseline()
    feed(b, noise(rng, 1500))  # a little over a day: every bucket has a value
    small = b.to_json()
    feed(b, noise(rng, 50000), start=1500)
    large = b.to_json()
    assert small.keys() == large.keys()
    for key, value in small.items():
        if isinstance(value, list):
            assert len(large[key]) == len(value), key
    assert len(json.dumps(large)) < 1.2 * len(json.dumps(small))
    assert not hasattr(b, "__dict__")  # __slots__: no attribute can be added on the way


@pytest.mark.parametrize(
    "bad",
    [
        {"buckets_per_day": 0},
        {"short_window": 0},
        {"level_alpha": 0.0},
        {"long_alpha": 1.5},
        {"season_halflife_days": -1.0},
        {"z_cap": 0.0},
    ],
)
def test_params_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        BaselineParams(**bad)  # type: ignore[arg-type]
