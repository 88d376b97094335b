"""Degraded: a sustained change of a numeric signal (response time first). Pure.

The streaming `Baseline` scores each sample; its score marks the *start* of
a change. A check is degraded only when that start is confirmed: after an
alarm (score >= `threshold`), over the next `sustain_s` (and at least
`min_runs` runs) at least `share` of the runs must be above both `ratio` x
the normal seen at the alarm and that normal + 3 spreads. One spike followed
by normal runs is then no change, and neither is noise around the old level;
a real slow-down with the odd fast run among many is. It recovers when as
large a share of the runs over as long is back under the midpoint.
Durations, not run counts: a check every 30 s and one every 5 min confirm
after the same time (the first on more evidence). Only upward changes count:
a faster page or fewer errors is not a problem. Constant memory per signal.
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
    #: The share of runs over sustain_s that must be beyond the limit (or, to
    #: recover, back under the midpoint).
    share: float = 0.75


@dataclass(slots=True)
class DegradedState:
    baseline: Baseline = field(default_factory=Baseline)
    #: The normal level when the current change was first seen (None: no change seen).
    normal: float | None = None
    limit: float = 0.0
    #: Runs in the current confirmation window, and of them on the far side.
    streak: int = 0
    hits: int = 0
    #: When the current confirmation window began (its first run).
    since: float = 0.0
    #: Sum of the values in the window (the level reported is their mean).
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
            # The normal is the lower of the profile's value for this time of day and
            # the recent level, both *before* this sample: the level may already be on
            # its way up (the alarm came minutes into a slow-down), the profile not.
            normal = min(before["level"], before["baseline"])
            limit = max(normal * params.ratio, normal + 3 * before["spread"])
            if value < limit:
                return None  # a change downwards, or too small to matter
            st.normal, st.limit = normal, limit
            st.streak = 0
        verdict = _window(st, t, value, value >= st.limit, params)
        if verdict is None:
            return None
        runs, st.streak = st.streak, 0
        if not verdict:
            st.normal = None
            return None
        st.degraded = True
        return Change("degraded", f"baseline {_fmt(st.normal, unit)}, now "
                                  f"{_fmt(st.total / runs, unit)} over the last {runs} runs")
    assert st.normal is not None
    if st.streak == 0 and value > (st.normal + st.limit) / 2:
        return None  # recovery windows start with a run that is back
    verdict = _window(st, t, value, value <= (st.normal + st.limit) / 2, params)
    if verdict is None:
        return None
    normal, now = st.normal, st.total / st.streak
    st.streak = 0
    if not verdict:
        return None
    st.degraded, st.normal = False, None
    return Change("recovered", f"back to {_fmt(now, unit)} (baseline {_fmt(normal, unit)})")


def _window(st: DegradedState, t: float, value: float, hit: bool, params: DegradedParams
            ) -> bool | None:
    """Count this run into the confirmation window: None while it is open, then
    whether enough of its runs were hits (the caller reads the window, then closes it
    by setting streak to 0)."""
    if st.streak == 0:
        st.since, st.total, st.hits = t, 0.0, 0
    st.streak, st.total, st.hits = st.streak + 1, st.total + value, st.hits + hit
    if st.streak < params.min_runs or t - st.since < params.sustain_s:
        return None
    return st.hits >= params.share * st.streak


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.3g}{unit}"
