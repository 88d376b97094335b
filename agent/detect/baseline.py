"""Streaming anomaly score for one numeric signal of one check. Pure, stdlib only.

Contract:
    b = Baseline()                      # one per (check, signal), default params
    score = b.update(t, value)          # in [0, 1]; scored from the past, then learned
    b.state()                           # {"baseline": ..., "level": ..., "spread": ...}
    Baseline.from_json(b.to_json())     # same future scores after a restart

`t` is the sample's time in seconds (Unix time: the profile's day is the UTC
day; for a 24-hour rhythm that only relabels the buckets, and after a DST
change the profile relearns the hour within days). Memory and time per
sample are constant: a few floats, `buckets_per_day` triples and a ring of
`short_window` raw scores. Non-finite values are ignored (score 0, nothing
learned): a failed probe is the outage detector's business, not this one's.

Method, in four stages (docs/detection.md has the figures):

1. Two forecasts of the value, each with its own spread:
   - the daily profile: `buckets_per_day` buckets keyed by time of day, each an
     exponentially weighted mean and variance of the values seen in it. Its
     forgetting is in days (`season_halflife_days`), not samples, so the
     profile means the same at any check interval;
   - the recent level: a fast EWMA of the value (`level_alpha`) with a slower
     EWMA of its squared one-step error (`spread_alpha`).
   The surprise of a sample is the smaller of its two |z|: a value is unusual
   only if it is unexpected both for this time of day and after the last few
   samples. The daily peak is then not flagged (the profile expects it), nor is
   noise around a slowly moving level (the level expects it).
2. The surprise is clipped to `z_cap` and scaled to a raw score in [0, 1].
3. Anomaly likelihood (as in Numenta's HTM): the mean raw score of the last
   `short_window` samples, compared with the long-run distribution of that
   mean (EWMA mean and variance, `long_alpha`): L = 1 - Q((short - mean) / std).
   This turns raw scores of any scale into a tail probability, so one
   threshold fits all signals; a sustained run of moderate surprises reaches
   it as surely as one big spike.
4. A value outside the envelope of everything seen (min/max widened by
   `range_tolerance` of the range; the envelope relaxes towards the level with
   `range_halflife_days`) is certain: L = 1. The score is log-scaled,
   score = log(1 - L) / log(1e-10), so 0.5 is a one-in-100,000 event. Only the
   first sample of a run of such events keeps its score; the rest of the run
   is capped at 0.3: an alarm marks the onset of a change, not each of its
   samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

_DAY = 86400.0
#: Scores are log(1 - L) / log(1e-10): L = 1 - 1e-10 maps to 1.0.
_LOG_SCALE = -math.log(1e-10)
#: L at or above this is "red" (score 0.5); runs of red keep only their first sample.
_RED = 1.0 - 1e-5
#: What the rest of a red run is capped at: the score of L = 0.999.
_AFTER_ONSET = math.log(1e-3) / -_LOG_SCALE
#: Lower bounds of the long-run distribution of short means (Numenta's values):
#: without them a signal that was perfectly predictable would alarm on any blip.
_MIN_MEAN = 0.03
_MIN_VAR = 0.0003
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class BaselineParams:
    #: Buckets of the daily profile (48: half-hours).
    buckets_per_day: int = 48
    #: A day's weight in a bucket's mean halves after this many days.
    season_halflife_days: float = 3.0
    #: Per-sample weight of the recent level (0.1: about the last 10 samples).
    level_alpha: float = 0.1
    #: Per-sample weight of the level's squared error (0.01: about 100 samples).
    spread_alpha: float = 0.01
    #: Surprise |z| at which the raw score saturates at 1.
    z_cap: float = 4.0
    #: Samples in the short mean of raw scores.
    short_window: int = 5
    #: Per-sample weight of the long-run distribution of short means (~500 samples).
    long_alpha: float = 0.002
    #: A value beyond the envelope by this fraction of its width is certain.
    range_tolerance: float = 0.05
    #: The envelope's excess over the level halves after this many days.
    range_halflife_days: float = 90.0
    #: Samples learned before any score above 0 (the envelope is meaningless before).
    warmup_samples: int = 288
    #: The spread never counts as less than this fraction of |level| (plus 1e-12),
    #: so a signal that never moved is not divided by zero when it does.
    min_spread_fraction: float = 1e-3

    def __post_init__(self) -> None:
        checks = [
            ("buckets_per_day", self.buckets_per_day >= 1),
            ("season_halflife_days", self.season_halflife_days > 0),
            ("level_alpha", 0 < self.level_alpha <= 1),
            ("spread_alpha", 0 < self.spread_alpha <= 1),
            ("z_cap", self.z_cap > 0),
            ("short_window", self.short_window >= 1),
            ("long_alpha", 0 < self.long_alpha <= 1),
            ("range_tolerance", self.range_tolerance >= 0),
            ("range_halflife_days", self.range_halflife_days > 0),
            ("warmup_samples", self.warmup_samples >= 0),
            ("min_spread_fraction", self.min_spread_fraction >= 0),
        ]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise ValueError(f"BaselineParams: out of range: {', '.join(bad)}")


def normal_tail(x: float) -> float:
    """Q(x) = P(N(0, 1) > x)."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def log_score(likelihood: float) -> float:
    """Map L in [0, 1] to a score in [0, 1] that spreads out the tail near 1."""
    score = math.log(1.0000000001 - likelihood) / -_LOG_SCALE
    return min(max(score, 0.0), 1.0)


def _halflife_alpha(dt: float, halflife: float) -> float:
    return 1.0 - math.pow(0.5, dt / halflife)


class Baseline:
    """The normal level and daily rhythm of one signal, and how unusual each sample is."""

    # Fixed attributes: the state is exactly these, whatever the number of samples.
    __slots__ = (
        "_b_mean", "_b_n", "_b_var", "_hi", "_last_likelihood", "_last_z", "_level",
        "_lo", "_long_mean", "_long_n", "_long_var", "_n", "_red", "_ring", "_ring_sum",
        "_t", "_var", "params",
    )

    def __init__(self, *, params: BaselineParams = BaselineParams()) -> None:
        self.params = params
        self._n = 0
        self._t = 0.0
        self._level = 0.0
        self._var = 0.0
        self._lo = 0.0
        self._hi = 0.0
        #: Per bucket: samples seen, mean, variance.
        self._b_n = [0] * params.buckets_per_day
        self._b_mean = [0.0] * params.buckets_per_day
        self._b_var = [0.0] * params.buckets_per_day
        self._ring = [0.0] * params.short_window
        self._ring_sum = 0.0
        self._long_n = 0
        self._long_mean = 0.0
        self._long_var = 0.0
        self._red = False
        # Last sample's figures, for state(); not needed to continue.
        self._last_z = 0.0
        self._last_likelihood = 0.0

    def _bucket(self, t: float) -> int:
        buckets = self.params.buckets_per_day
        return min(int((t % _DAY) / _DAY * buckets), buckets - 1)

    def update(self, t: float, value: float) -> float:
        """Score `value` at time `t` against what was learned so far, then learn it."""
        if not (math.isfinite(value) and math.isfinite(t)):
            return 0.0
        p = self.params
        self._n += 1
        if self._n == 1:
            self._t = t
            self._level = self._lo = self._hi = value
            b = self._bucket(t)
            self._b_n[b], self._b_mean[b] = 1, value
            return 0.0
        # Time since the previous sample, bounded: a gap of a week teaches no more
        # about a bucket than one bucket's width of samples would.
        width = _DAY / p.buckets_per_day
        dt = min(max(t - self._t, 0.0), width)
        self._t = t

        # 1. Surprise: the smaller |z| of the daily profile and the recent level.
        floor = p.min_spread_fraction * abs(self._level) + 1e-12
        z = abs(value - self._level) / max(math.sqrt(self._var), floor)
        b = self._bucket(t)
        if self._b_n[b] > 0:
            z_day = abs(value - self._b_mean[b]) / max(math.sqrt(self._b_var[b]), floor)
            z = min(z, z_day)
        if not z < math.inf:  # inf or nan, from values near the float range's end
            z = p.z_cap
        self._last_z = z
        # 2. Raw score.
        raw = min(z, p.z_cap) / p.z_cap
        # 4a. Outside the envelope? (Judged before the envelope learns this value.)
        tolerance = (self._hi - self._lo) * p.range_tolerance
        outside = self._hi > self._lo and not (
            self._lo - tolerance <= value <= self._hi + tolerance
        )

        self._learn(b, value, dt)

        # 3. Anomaly likelihood of the short mean of raw scores.
        slot = (self._n - 2) % p.short_window
        self._ring_sum += raw - self._ring[slot]
        self._ring[slot] = raw
        short = self._ring_sum / min(self._n - 1, p.short_window)
        if self._long_n == 0:
            self._long_mean = short
        mean = max(self._long_mean, _MIN_MEAN)
        var = max(self._long_var, _MIN_VAR)
        likelihood = 1.0 - normal_tail((short - mean) / math.sqrt(var))
        # Weight 1/n at first so that the early estimate is a plain average.
        self._long_n += 1
        alpha = max(p.long_alpha, 1.0 / self._long_n)
        delta = short - self._long_mean
        self._long_mean += alpha * delta
        self._long_var = (1.0 - alpha) * (self._long_var + alpha * delta * delta)

        # 4b. Envelope, log scale, onset only.
        if outside:
            likelihood = 1.0
        self._last_likelihood = likelihood
        red = likelihood >= _RED
        was_red, self._red = self._red, red
        if self._n <= p.warmup_samples:
            return 0.0
        score = log_score(likelihood)
        if red and was_red:
            score = min(score, _AFTER_ONSET)
        return score

    def _learn(self, b: int, value: float, dt: float) -> None:
        p = self.params
        error = value - self._level
        self._var += p.spread_alpha * (error * error - self._var)
        self._level += p.level_alpha * error
        # The profile forgets per day: a bucket gets (width / dt) samples a day.
        if self._b_n[b] == 0:
            self._b_mean[b] = value
        else:
            width = _DAY / p.buckets_per_day
            alpha = _halflife_alpha(dt, width * p.season_halflife_days)
            delta = value - self._b_mean[b]
            self._b_mean[b] += alpha * delta
            self._b_var[b] = (1.0 - alpha) * (self._b_var[b] + alpha * delta * delta)
        self._b_n[b] += 1
        # The envelope widens at once and relaxes slowly towards the level.
        relax = _halflife_alpha(dt, p.range_halflife_days * _DAY)
        self._hi = max(value, self._hi - relax * (self._hi - self._level))
        self._lo = min(value, self._lo + relax * (self._level - self._lo))

    def expected(self, t: float) -> float:
        """The daily profile's value for time t (the recent level where it has none)."""
        b = self._bucket(t)
        return self._b_mean[b] if self._b_n[b] > 0 else self._level

    def state(self) -> dict[str, float]:
        """Figures for a reason: "baseline 150 ms (± 12), now 900 ms"."""
        b = self._bucket(self._t)
        seen = self._b_n[b] > 0
        return {
            "samples": float(self._n),
            "baseline": self._b_mean[b] if seen else self._level,
            "baseline_spread": math.sqrt(self._b_var[b]) if seen else math.sqrt(self._var),
            "level": self._level,
            "spread": math.sqrt(self._var),
            "low": self._lo,
            "high": self._hi,
            "surprise_z": self._last_z,
            "likelihood": self._last_likelihood,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this one stopped (JSON-safe)."""
        return {
            "format": _FORMAT,
            "params": asdict(self.params),
            "n": self._n,
            "t": self._t,
            "level": self._level,
            "var": self._var,
            "lo": self._lo,
            "hi": self._hi,
            "bucket_n": list(self._b_n),
            "bucket_mean": list(self._b_mean),
            "bucket_var": list(self._b_var),
            "ring": list(self._ring),
            "ring_sum": self._ring_sum,
            "long_n": self._long_n,
            "long_mean": self._long_mean,
            "long_var": self._long_var,
            "red": self._red,
            "last_z": self._last_z,
            "last_likelihood": self._last_likelihood,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        """Rebuild from to_json(); ValueError if it is not one (a corrupt store row)."""
        try:
            if data["format"] != _FORMAT:
                raise ValueError(f"unknown baseline format {data['format']!r}")
            known = {f.name for f in fields(BaselineParams)}
            params = BaselineParams(**{k: v for k, v in data["params"].items() if k in known})
            b = cls(params=params)
            lists = (data["bucket_n"], data["bucket_mean"], data["bucket_var"])
            if any(len(x) != params.buckets_per_day for x in lists):
                raise ValueError("bucket count does not match buckets_per_day")
            if len(data["ring"]) != params.short_window:
                raise ValueError("ring length does not match short_window")
            b._n = int(data["n"])
            b._t = float(data["t"])
            b._level, b._var = float(data["level"]), float(data["var"])
            b._lo, b._hi = float(data["lo"]), float(data["hi"])
            b._b_n = [int(x) for x in data["bucket_n"]]
            b._b_mean = [float(x) for x in data["bucket_mean"]]
            b._b_var = [float(x) for x in data["bucket_var"]]
            b._ring = [float(x) for x in data["ring"]]
            b._ring_sum = float(data["ring_sum"])
            b._long_n = int(data["long_n"])
            b._long_mean, b._long_var = float(data["long_mean"]), float(data["long_var"])
            b._red = bool(data["red"])
            b._last_z = float(data["last_z"])
            b._last_likelihood = float(data["last_likelihood"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a saved baseline: {exc!r}") from exc
        return b
