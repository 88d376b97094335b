"""Degraded: a sustained change of a numeric signal (response time first). Pure.

The streaming `Baseline` scores each sample; its score marks the *start* of
a change. A check is degraded only when that start is confirmed: after an
alarm (score >= `threshold`) the recent level must stay above both
`ratio` x the baseline seen at the alarm and that baseline + 3 spreads for
`sustain` samples in a row. It recovers when the level has been back under
the midpoint for `sustain` samples. Only upward changes count: a faster page
or fewer errors is not a problem. Constant memory per signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.detect.baseline import Baseline


@dataclass(frozen=True, slots=True)
class DegradedParams:
    threshold: float = 0.5
    sustain: int = 5
    ratio: float = 1.5


@dataclass(slots=True)
class DegradedState:
    baseline: Baseline = field(default_factory=Baseline)
    #: The normal level when the current change was first seen (None: no change seen).
    normal: float | None = None
    limit: float = 0.0
    streak: int = 0
    #: Sum of the values in the current streak (the level reported is their mean).
    total: float = 0.0
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "degraded" or "recovered"
    reason: str


def observe(st: DegradedState, t: float, value: float, *, unit: str = "s",
            params: DegradedParams = DegradedParams()) -> Change | None:
    before = st.baseline.state() if st.normal is None and not st.degraded else None
    score = st.baseline.update(t, value)
    if not st.degraded:
        if st.normal is None:
            if score < params.threshold or before is None or before["samples"] < 1:
                return None
            # The normal is the recent level *before* this sample: the profile bucket
            # may never have been seen (a new time of day), the recent level always has.
            st.normal = before["level"]
            st.limit = max(st.normal * params.ratio, st.normal + 3 * before["spread"])
            st.streak, st.total = 0, 0.0
        # Every run of the streak must be beyond the limit: one spike, however
        # large, followed by normal runs is not a change.
        if value >= st.limit:
            st.streak, st.total = st.streak + 1, st.total + value
        else:
            st.normal, st.streak = None, 0
            return None
        if st.streak >= params.sustain:
            now = st.total / st.streak
            st.degraded, st.streak, st.total = True, 0, 0.0
            return Change("degraded", f"baseline {_fmt(st.normal, unit)}, now "
                                      f"{_fmt(now, unit)} over the last {params.sustain} runs")
        return None
    assert st.normal is not None
    if value <= (st.normal + st.limit) / 2:
        st.streak, st.total = st.streak + 1, st.total + value
        if st.streak >= params.sustain:
            normal, now = st.normal, st.total / st.streak
            st.degraded, st.normal, st.streak, st.total = False, None, 0, 0.0
            return Change("recovered", f"back to {_fmt(now, unit)} "
                                       f"(baseline {_fmt(normal, unit)})")
    else:
        st.streak, st.total = 0, 0.0
    return None


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.3g}{unit}"
