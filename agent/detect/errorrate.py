"""Error-rate baseline: a check that fails far more often than its own normal. Pure.

Contract:
    er = ErrorRate()                            # one per check, default params
    change = er.observe(t, ok)                  # Change("degraded" | "recovered") or None
    ErrorRate.restore(er.snapshot())            # same future decisions after a restart

The outage detector pages when a check fails `confirm` times in a row. A
flaky dependency (a checkout API failing 1 run in 5 where it used to fail 1
in 500) never does that, yet the shop loses every fifth customer. This one
learns the check's own failure share and opens "degraded" when the recent
share is well above it:

- Each run weighs the time since the previous one (at most `max_gap_s`): the
  share is of time, so the quick re-checks after a failure (seconds apart)
  count for little and a 30 s and a 5 min check mean the same.
- The recent share is an exponentially weighted share over
  `recent_halflife_s`; the normal over `normal_halflife_s`, starting from
  `prior_share` worth `prior_s` of observation; nothing is judged before
  `prior_s` of runs were seen (a new check that always fails 1 in 12 is
  learned, not paged). The normal is frozen while degraded, so the problem
  does not become the normal.
- Degraded when the recent share is at least `factor` x the normal, at least
  `min_share`, and made of at least `min_failures` failed runs (weighted the
  same way), `surprise` standard deviations more than the normal share
  predicts for that many runs: one unlucky failure, or a bad hour of a check
  that often fails, is no rate. Recovered when the recent share
  is back under half of the limit it crossed.

The caller feeds only results of a check that is not down: a confirmed
outage is the outage detector's incident, not an error rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.detect.snapshot import SnapshotError, load_slots, save_slots

FORMAT = 1


@dataclass(frozen=True, slots=True)
class ErrorRateParams:
    """Defaults in time; the module docstring says how each one is used."""

    recent_halflife_s: float = 3600.0  # the recent failure share
    normal_halflife_s: float = 7 * 86400.0  # the check's normal share
    prior_share: float = 0.01  # the normal before any run was seen,
    prior_s: float = 86400.0  # worth this much observed time (also the learning time)
    factor: float = 5.0  # degraded at this many times the normal,
    min_share: float = 0.05  # at least this share,
    min_failures: float = 3.0  # at least this many recently weighted failed runs,
    #: and that many failed runs must be this many standard deviations above what
    #: the normal share predicts for the recent runs (Poisson: one in 10^5 and
    #: rarer), so a check failing 1 in 50 is not degraded by a bad hour.
    surprise: float = 5.0
    max_gap_s: float = 600.0  # a run stands for at most this long (the first after a gap)

    def __post_init__(self) -> None:
        positive = ("recent_halflife_s", "normal_halflife_s", "prior_s", "max_gap_s")
        bad = [n for n in positive if not getattr(self, n) > 0]
        bad += [n for n in ("prior_share", "min_share") if not 0 <= getattr(self, n) < 1]
        bad += [n for n in ("factor", "min_failures") if not getattr(self, n) >= 1]
        bad += [] if self.surprise >= 0 else ["surprise"]
        if bad:
            raise ValueError(f"ErrorRateParams: out of range: {', '.join(bad)}")


@dataclass(frozen=True, slots=True)
class RateChange:
    kind: str  # "degraded" or "recovered"
    reason: str


def _decay(dt: float, halflife: float) -> float:
    return math.pow(0.5, dt / halflife)


class ErrorRate:
    """How often one check fails now, against how often it normally fails."""

    __slots__ = ("_calm_since", "_degraded", "_fail_runs", "_limit", "_n", "_normal_fail",
                 "_normal_time", "_recent_fail", "_recent_time", "_runs", "_t", "params")
    STATE = tuple(name for name in __slots__ if name != "params")

    def __init__(self, *, params: ErrorRateParams = ErrorRateParams()) -> None:
        self.params = params
        self._n = 0
        self._t = 0.0
        #: Exponentially weighted seconds observed, and of them failing.
        self._recent_time = self._recent_fail = 0.0
        self._normal_time = self._normal_fail = 0.0
        #: Exponentially weighted counts of runs and failed runs (recent half-life).
        self._runs = self._fail_runs = 0.0
        self._degraded = False
        self._limit = 0.0
        #: While degraded: since when the recent share is back under half the limit.
        self._calm_since = -1.0

    def normal(self) -> float:
        p = self.params
        return ((self._normal_fail + p.prior_share * p.prior_s)
                / (self._normal_time + p.prior_s))

    def recent(self) -> float:
        return self._recent_fail / self._recent_time if self._recent_time > 0 else 0.0

    def observe(self, t: float, ok: bool) -> RateChange | None:
        """Learn one run at time t; the change of state it causes, if any."""
        p = self.params
        if not math.isfinite(t):
            return None
        self._n += 1
        dt = p.max_gap_s if self._n == 1 else min(max(t - self._t, 0.0), p.max_gap_s)
        self._t = t
        failed = 0.0 if ok else 1.0
        keep = _decay(dt, p.recent_halflife_s)
        self._recent_time = self._recent_time * keep + dt
        self._recent_fail = self._recent_fail * keep + dt * failed
        self._fail_runs = self._fail_runs * keep + failed
        self._runs = self._runs * keep + 1.0
        if not self._degraded:
            keep = _decay(dt, p.normal_halflife_s)
            self._normal_time = self._normal_time * keep + dt
            self._normal_fail = self._normal_fail * keep + dt * failed
        recent, normal = self.recent(), self.normal()
        if not self._degraded and self._normal_time >= p.prior_s:
            limit = max(p.factor * normal, p.min_share)
            expected = normal * self._runs
            evidence = max(p.min_failures, expected + p.surprise * math.sqrt(expected) + 1.0)
            if recent >= limit and self._fail_runs >= evidence:
                self._degraded, self._limit = True, limit
                return RateChange("degraded", f"failing {_pct(recent)} of the time recently "
                                              f"(half-life {_dur(p.recent_halflife_s)}), "
                                              f"normally {_pct(normal)}")
        elif not self._degraded:
            pass  # still learning this check's normal
        elif recent >= self._limit / 2:
            self._calm_since = -1.0
        elif self._calm_since < 0:
            self._calm_since = t
        elif t - self._calm_since >= p.recent_halflife_s:
            self._degraded, self._calm_since = False, -1.0
            return RateChange("recovered", f"failing {_pct(recent)} of the time again "
                                           f"(normally {_pct(normal)})")
        return None

    @property
    def degraded(self) -> bool:
        return self._degraded

    @property
    def samples(self) -> int:
        """Runs learned so far."""
        return self._n

    def snapshot(self) -> dict[str, object]:
        return save_slots(self, FORMAT, self.params, self.STATE)

    @classmethod
    def restore(cls, data: object, *, params: ErrorRateParams = ErrorRateParams()
                ) -> ErrorRate:
        """Rebuild from snapshot(); SnapshotError when it cannot be used."""
        er = cls(params=params)
        load_slots(er, data, FORMAT, params, cls.STATE)
        if (er._recent_fail > er._recent_time or er._normal_fail > er._normal_time
                or er._fail_runs > er._runs):
            raise SnapshotError("more failing time than observed time")
        return er


def _pct(share: float) -> str:
    return f"{share:.0%}" if share >= 0.1 else f"{share:.1%}"


def _dur(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"
