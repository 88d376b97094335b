"""Degraded detection on synthetic response times: a sustained slow-down opens, a
spike does not, and the return to normal recovers."""

from __future__ import annotations

import random
import re

from agent.detect.degraded import DegradedState, observe

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
