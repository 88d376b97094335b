"""Degraded: a sustained change of a numeric signal (response time first). Pure.

The streaming `Baseline` scores each sample; its score marks the *start* of
a change. A check is degraded only when that start is confirmed: after an
alarm (score >= `threshold`) every run must stay above both `ratio` x the
normal seen at the alarm and that normal + 3 spreads, for `sustain_s` and at
least `min_runs` runs. It recovers when the value has been back under the
midpoint for as long. Durations, not run counts: a check every 30 s and one
every 5 min confirm after the same time (the first with more evidence). Only
upward changes count: a faster page or fewer errors is not a problem.
Constant memory per signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.detect.baseline import Baseline


@dataclass(frozen=True, slots=True)
class DegradedParams:
    #: The baseline score that starts a candidate change.
    threshold: float = 0.5
    #: How long the change must last (and recovery too) ...
    sustain_s: float = 600.0
    #: ... in at least this many runs.
    min_runs: int = 3
    #: The level must be at least this many times the normal.
    ratio: float = 1.5


@dataclass(slots=True)
class DegradedState:
    baseline: Baseline = field(default_factory=Baseline)
    #: The normal level when the current change was first seen (None: no change seen).
    normal: float | None = None
    limit: float = 0.0
    streak: int = 0
    #: When the current streak began.
    since: float = 0.0
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
            st.streak = 0
        # Every run of the streak must be beyond the limit: one spike, however
        # large, followed by normal runs is not a change.
        if value < st.limit:
            st.normal, st.streak = None, 0
            return None
        if _lasted(st, t, value, params):
            now, runs = st.total / st.streak, st.streak
            st.degraded, st.streak = True, 0
            return Change("degraded", f"baseline {_fmt(st.normal, unit)}, now "
                                      f"{_fmt(now, unit)} over the last {runs} runs")
        return None
    assert st.normal is not None
    if value > (st.normal + st.limit) / 2:
        st.streak = 0
    elif _lasted(st, t, value, params):
        normal, now = st.normal, st.total / st.streak
        st.degraded, st.normal, st.streak = False, None, 0
        return Change("recovered", f"back to {_fmt(now, unit)} (baseline {_fmt(normal, unit)})")
    return None


def _lasted(st: DegradedState, t: float, value: float, params: DegradedParams) -> bool:
    """Count this run into the streak; True once it spans sustain_s and min_runs."""
    if st.streak == 0:
        st.since, st.total = t, 0.0
    st.streak, st.total = st.streak + 1, st.total + value
    return st.streak >= params.min_runs and t - st.since >= params.sustain_s


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.3g}{unit}"
