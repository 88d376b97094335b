"""Degraded: a sustained change of a numeric signal (response time first). Pure.

The streaming `Baseline` scores each sample; its score marks the *start* of
a change. A check is degraded only when that start is confirmed:

- a candidate starts on a run whose score is >= `threshold` (a one-in-100
  surprise: the baseline's likelihood >= 0.99) and whose value is beyond the
  limit: above both `ratio` x the normal and the normal + `spreads` spreads
  (the normal is the lower of the daily profile's value for this time of day
  and the recent level, both before this run: the level may already be on its
  way up; the spread is the lower of the recent level's and the *calm* spread,
  its EWMA outside changes over `calm_halflife_s`: a slow-down that started
  an hour ago has already widened the recent spread, and must not be judged
  against its own noise);
- over the next `sustain_s` (and at least `min_runs` runs), at least `share`
  of the runs must be beyond that limit: the median of those minutes is. One
  spike followed by normal runs is then no change, and neither is noise around
  the old level; a real slow-down with the odd fast run among many is.

It recovers when as large a share of the runs over as long is back past the
midpoint between the normal and the limit. For `quiet_s` after a recovery
only a red score (>= `red`, one in 100,000) starts a new candidate: a signal
that just came back is still unsettled, and paging again for its aftershocks
tells nobody anything new.

Durations, not run counts: a check every 30 s and one every 5 min confirm
after the same time (the first on more evidence). Direction: with `falls`
off (the response time) only a rise counts, since a faster page is no
problem; with it on (observations, whose meaning onwatch does not know: disk
free, orders an hour, a queue depth) a fall below the normal / `ratio` and
the normal - `spreads` spreads counts the same way. Constant memory per
signal: the baseline and a dozen numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.detect.baseline import Baseline, halflife_alpha


@dataclass(frozen=True, slots=True)
class DegradedParams:
    """Defaults chosen by the leave-one-category-out fold mean (docs/detection.md)."""

    #: The baseline score that starts a candidate change (0.2: likelihood 0.99).
    threshold: float = 0.2
    #: How long the change must last (and recovery too) ...
    sustain_s: float = 600.0
    #: ... in at least this many runs.
    min_runs: int = 3
    #: The level must be at least this many times the normal (or, falling, at most
    #: the normal / ratio) ...
    ratio: float = 1.5
    #: ... and this many spreads of the recent level away from it.
    spreads: float = 3.0
    #: The share of runs over sustain_s that must be beyond the limit (or, to
    #: recover, back past the midpoint): 0.5, the median of those minutes.
    share: float = 0.5
    #: After a recovery, for this long only a score >= red starts a new candidate.
    quiet_s: float = 43200.0
    red: float = 0.5
    #: Whether a fall counts too (observations), not only a rise (the response time).
    falls: bool = False
    #: The calm spread: an EWMA of the spread outside changes, with this half-life (0:
    #: off). The limit uses the smaller of it and the spread now.
    calm_halflife_s: float = 86400.0


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
    #: The direction of the current change: a rise (else a fall).
    up: bool = True
    #: When the last degraded spell recovered (the quiet period runs from there).
    recovered_at: float = -1e18
    #: The spread outside changes (0: none yet), and the last run that taught it.
    calm: float = 0.0
    calm_t: float = 0.0


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "degraded" or "recovered"
    reason: str


def observe(st: DegradedState, t: float, value: float, *, unit: str = "s",
            params: DegradedParams = DegradedParams()) -> Change | None:
    before = st.baseline.state() if st.normal is None and not st.degraded else None
    if before is not None and params.calm_halflife_s > 0 and before["samples"] >= 1:
        if st.calm == 0.0:
            st.calm = before["spread"]
        else:
            dt = min(max(t - st.calm_t, 0.0), params.calm_halflife_s)
            st.calm += halflife_alpha(dt, params.calm_halflife_s) * (before["spread"] - st.calm)
        st.calm_t = t
    score = st.baseline.update(t, value)
    if not st.degraded:
        if st.normal is None:
            bar = params.red if t - st.recovered_at < params.quiet_s else params.threshold
            if score < bar or before is None or before["samples"] < 1:
                return None
            if not _start(st, before, value, params):
                return None  # no change, or one in a direction that does not count
        verdict = _window(st, t, value, _beyond(st, value, st.limit), params)
        if verdict is None:
            return None
        runs, st.streak = st.streak, 0
        if not verdict:
            st.normal = None
            return None
        st.degraded = True
        assert st.normal is not None
        return Change("degraded", f"baseline {_fmt(st.normal, unit)}, now "
                                  f"{_fmt(st.total / runs, unit)} over the last {runs} runs")
    assert st.normal is not None
    mid = (st.normal + st.limit) / 2
    if st.streak == 0 and _beyond(st, value, mid):
        return None  # recovery windows start with a run that is back
    verdict = _window(st, t, value, not _beyond(st, value, mid), params)
    if verdict is None:
        return None
    normal, now = st.normal, st.total / st.streak
    st.streak = 0
    if not verdict:
        return None
    st.degraded, st.normal, st.recovered_at = False, None, t
    return Change("recovered", f"back to {_fmt(now, unit)} (baseline {_fmt(normal, unit)})")


def _start(st: DegradedState, before: dict[str, float], value: float, p: DegradedParams
           ) -> bool:
    """Open a candidate if `value` is beyond the limit above (or, with falls, below) the
    normal seen before this run."""
    spread = p.spreads * (min(before["spread"], st.calm) if st.calm > 0 else before["spread"])
    normal = min(before["level"], before["baseline"])
    limit = max(normal * p.ratio, normal + spread)
    up = value >= limit
    if not up:
        if not p.falls:
            return False
        normal = max(before["level"], before["baseline"])
        limit = min(normal / p.ratio, normal - spread)
        if value > limit:
            return False
    st.normal, st.limit, st.up, st.streak = normal, limit, up, 0
    return True


def _beyond(st: DegradedState, value: float, bar: float) -> bool:
    """Whether `value` is past `bar` in the current change's direction."""
    return value >= bar if st.up else value <= bar


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
