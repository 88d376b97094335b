"""Streaming anomaly score for one numeric signal of one check. Pure, stdlib only.

Contract:
    b = Baseline()                      # one per (check, signal), default params
    score = b.update(t, value)          # in [0, 1]; scored from the past, then learned
    b.state()                           # {"baseline": ..., "level": ..., "spread": ...}
    Baseline.restore(b.snapshot())      # same future scores after a restart

`t` is the sample's time in seconds (Unix time: the profile's day is the UTC
day). Every constant is a duration, never a count of samples, so a check run
every 30 s and a series sampled every 5 min behave alike on the same shape.
Memory and time per sample are constant: a dozen floats and
`buckets_per_day` triples. Non-finite values are ignored (score 0, nothing
learned): a failed probe is the outage detector's business, not this one's.

Method, in four stages (docs/detection.md has the figures):

1. Two forecasts of the value, each with its own spread:
   - the daily profile: `buckets_per_day` buckets keyed by time of day, each an
     exponentially weighted mean and variance of the values seen in it; a
     day's weight halves in `season_halflife_days`;
   - the recent level: an EWMA of the value (half-life `level_halflife_s`) with
     an EWMA of its absolute one-step error (`spread_halflife_s`). The mean
     absolute error, not the RMS: one burst in heavy-tailed noise inflates a
     variance for hours and hides the next change, an absolute error much less.
   The surprise of a sample is the smaller of its two |z|: a value is unusual
   only if it is unexpected both for this time of day and after the last
   minutes. The daily peak is then not flagged, nor is noise around a slowly
   moving level.
2. The surprise is clipped to `z_cap` and scaled to a raw score in [0, 1].
3. Anomaly likelihood (as in Numenta's HTM): a short time-weighted mean of raw
   scores (half-life `short_halflife_s`) against the long-run distribution of
   that mean (`long_halflife_s`): L = 1 - Q((short - mean) / std). Raw scores
   of any scale become a tail probability, so one threshold fits all signals.
4. A value outside the envelope of everything seen (min/max widened by
   `range_tolerance` of the range; the envelope relaxes towards the level with
   `range_halflife_days`) is certain: L = 1. The score is log-scaled,
   score = log(1 - L) / log(1e-10), so 0.5 is a one-in-100,000 event. An
   alarm marks the onset of a change: after a sample scores red, the scores
   of the next `holdoff_s` are capped at 0.3 (an alarm a little later, within
   the same change, adds nothing to anyone and costs a page).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from agent.detect.snapshot import SnapshotError, load_slots, save_slots

_DAY = 86400.0
#: Scores are log(1 - L) / log(1e-10): L = 1 - 1e-10 maps to 1.0.
_LOG_SCALE = -math.log(1e-10)
#: L at or above this is "red" (score 0.5).
_RED = 1.0 - 1e-5
#: What scores are capped at during the hold-off after a red one: the score of L = 0.999.
_AFTER_ONSET = math.log(1e-3) / -_LOG_SCALE
#: Lower bounds of the long-run distribution of short means (Numenta's values):
#: without them a signal that was perfectly predictable would alarm on any blip.
_MIN_MEAN = 0.03
_MIN_VAR = 0.0003
#: Mean absolute deviation of a normal distribution is sigma * sqrt(2 / pi).
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)
#: Bump when the meaning of the stored state changes: older snapshots are discarded.
FORMAT = 2


@dataclass(frozen=True, slots=True)
class BaselineParams:
    #: Buckets of the daily profile (48: half-hours).
    buckets_per_day: int = 48
    #: A day's weight in a bucket's mean halves after this many days.
    season_halflife_days: float = 3.0
    #: Half-life of a sample's weight in the recent level.
    level_halflife_s: float = 900.0
    #: Half-life of a sample's weight in the level's mean absolute error.
    spread_halflife_s: float = 6 * 3600.0
    #: Surprise |z| at which the raw score saturates at 1.
    z_cap: float = 4.0
    #: Half-life of the short mean of raw scores.
    short_halflife_s: float = 300.0
    #: Half-life of the long-run distribution of short means.
    long_halflife_s: float = 86400.0
    #: A value beyond the envelope by this fraction of its width is certain.
    range_tolerance: float = 0.05
    #: The envelope's excess over the level halves after this many days.
    range_halflife_days: float = 90.0
    #: Learned before any score above 0 (the envelope is meaningless before): this
    #: long, and at least this many samples whatever the interval.
    warmup_s: float = 86400.0
    warmup_min_samples: int = 30
    #: After a red score, later scores are capped for this long (onset only).
    holdoff_s: float = 10800.0
    # The largest recent short mean of raw scores (the peak) sets a floor under the
    # spread of short means (stage 4 of the module docstring):
    peak_margin: float = 3.0  # reaching the peak again is this z (0: no floor)
    peak_halflife_days: float = 7.0  # its excess over the long-run mean halves so
    peak_delay_s: float = 3600.0  # a short mean joins the peak this long after
    #: The spread never counts as less than this fraction of |level| (plus 1e-12),
    #: so a signal that never moved is not divided by zero when it does.
    min_spread_fraction: float = 1e-3

    def __post_init__(self) -> None:
        positive = ("season_halflife_days", "level_halflife_s", "spread_halflife_s", "z_cap",
                    "short_halflife_s", "long_halflife_s", "range_halflife_days",
                    "peak_halflife_days", "peak_delay_s")
        bad = [name for name in positive if not getattr(self, name) > 0]
        at_least_zero = ("peak_margin", "range_tolerance", "warmup_s", "warmup_min_samples",
                         "holdoff_s", "min_spread_fraction")
        bad += [name for name in at_least_zero if not getattr(self, name) >= 0]
        if self.buckets_per_day < 1:
            bad.insert(0, "buckets_per_day")
        if bad:
            raise ValueError(f"BaselineParams: out of range: {', '.join(bad)}")


def normal_tail(x: float) -> float:
    """Q(x) = P(N(0, 1) > x)."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def log_score(likelihood: float) -> float:
    """Map L in [0, 1] to a score in [0, 1] that spreads out the tail near 1."""
    score = math.log(1.0000000001 - likelihood) / -_LOG_SCALE
    return min(max(score, 0.0), 1.0)


def halflife_alpha(dt: float, halflife: float) -> float:
    """The weight of a sample `dt` after the previous one for an EWMA of this half-life."""
    return 1.0 - math.pow(0.5, dt / halflife)


class Baseline:
    """The normal level and daily rhythm of one signal, and how unusual each sample is."""

    # Fixed attributes: the state is exactly these, whatever the number of samples.
    __slots__ = (
        "_b_mean", "_b_n", "_b_var", "_hi", "_hold_until", "_last_likelihood", "_last_z",
        "_level", "_lo", "_long_mean", "_long_n", "_long_var", "_mad", "_mad_w", "_n", "_peak",
        "_short", "_slot_max", "_slot_start",
        "_start", "_t", "params",
    )
    #: The attributes a snapshot holds (all but params, which it records apart).
    STATE = tuple(name for name in __slots__ if name != "params")

    def __init__(self, *, params: BaselineParams = BaselineParams()) -> None:
        self.params = params
        self._n = 0
        self._start = self._t = 0.0
        self._level = self._mad = 0.0
        #: The weight the mean absolute error has gathered since the start (it starts
        #: at 0, so its first hours are divided by this instead of read as calm).
        self._mad_w = 0.0
        self._lo = self._hi = 0.0
        #: Per bucket: samples seen, mean, variance. Typed arrays, not lists: a learned
        #: float in a list is an object of its own (32 bytes with its pointer), and ten
        #: thousand checks' profiles grew by 3 KB a check over their first day.
        buckets = params.buckets_per_day
        self._b_n = array("q", bytes(8 * buckets))
        self._b_mean = array("d", bytes(8 * buckets))
        self._b_var = array("d", bytes(8 * buckets))
        self._short = self._peak = 0.0
        #: The largest short mean since `_slot_start` (it joins the peak when the slot ends).
        self._slot_max = self._slot_start = 0.0
        self._long_n = 0
        self._long_mean = self._long_var = 0.0
        #: Scores are capped until this time (the hold-off after a red one).
        self._hold_until = -1e18
        # Last sample's figures, for state(); not needed to continue.
        self._last_z = self._last_likelihood = 0.0

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
            self._start = self._t = t
            self._level = self._lo = self._hi = value
            b = self._bucket(t)
            self._b_n[b], self._b_mean[b] = 1, value
            return 0.0
        # Time since the previous sample, bounded: a gap of a week teaches no more
        # about a bucket than one bucket's width of samples would.
        dt = min(max(t - self._t, 0.0), _DAY / p.buckets_per_day)
        self._t = t

        # 1. Surprise: the smaller |z| of the daily profile and the recent level.
        floor = p.min_spread_fraction * abs(self._level) + 1e-12
        z = abs(value - self._level) / max(self._spread(), floor)
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
        likelihood = 1.0 if outside else self._likelihood(raw, dt)
        self._last_likelihood = likelihood
        # 4b. Log scale, onset only, warm-up.
        if self._n <= p.warmup_min_samples or t - self._start < p.warmup_s:
            return 0.0
        score = log_score(likelihood)
        if t < self._hold_until:
            return min(score, _AFTER_ONSET)
        if likelihood >= _RED:
            self._hold_until = t + p.holdoff_s
        return score

    def _likelihood(self, raw: float, dt: float) -> float:
        """3. The tail probability of the short mean of raw scores; learns it too."""
        p = self.params
        # The first raw score is taken whole, so the mean does not start from 0.
        alpha = halflife_alpha(dt, p.short_halflife_s) if self._n > 2 else 1.0
        self._short += alpha * (raw - self._short)
        short = self._short
        if self._long_n == 0:
            self._long_mean = short
        mean = max(self._long_mean, _MIN_MEAN)
        std = math.sqrt(max(self._long_var, _MIN_VAR))
        if p.peak_margin > 0:
            # A series that often surprises must surprise more than it did lately.
            std = max(std, (self._peak - mean) / p.peak_margin)
        likelihood = 1.0 - normal_tail((short - mean) / std)
        # Weight 1/n at first so that the early estimate is a plain average.
        self._long_n += 1
        alpha = max(halflife_alpha(dt, p.long_halflife_s), 1.0 / self._long_n)
        delta = short - self._long_mean
        self._long_mean += alpha * delta
        self._long_var = (1.0 - alpha) * (self._long_var + alpha * delta * delta)
        # The peak learns the largest short mean of each `peak_delay_s` once that
        # period is over: a change that builds up over minutes must not raise its own
        # bar on the way. Nor do the first samples (of a spread still near 0).
        relax = halflife_alpha(dt, p.peak_halflife_days * _DAY)
        self._peak -= relax * (self._peak - self._long_mean)
        if self._t - self._slot_start >= p.peak_delay_s:
            self._peak = max(self._peak, self._slot_max)
            self._slot_start, self._slot_max = self._t, 0.0
        self._slot_max = max(self._slot_max, short)
        return likelihood

    def _learn(self, b: int, value: float, dt: float) -> None:
        p = self.params
        error = value - self._level
        alpha = halflife_alpha(dt, p.spread_halflife_s)
        self._mad += alpha * (abs(error) - self._mad)
        self._mad_w += alpha * (1.0 - self._mad_w)
        self._level += halflife_alpha(dt, p.level_halflife_s) * error
        # The profile forgets per day: a bucket gets (width / dt) samples a day.
        if self._b_n[b] == 0:
            self._b_mean[b] = value
        else:
            width = _DAY / p.buckets_per_day
            alpha = halflife_alpha(dt, width * p.season_halflife_days)
            delta = value - self._b_mean[b]
            self._b_mean[b] += alpha * delta
            self._b_var[b] = (1.0 - alpha) * (self._b_var[b] + alpha * delta * delta)
        self._b_n[b] += 1
        # The envelope widens at once and relaxes slowly towards the level.
        relax = halflife_alpha(dt, p.range_halflife_days * _DAY)
        self._hi = max(value, self._hi - relax * (self._hi - self._level))
        self._lo = min(value, self._lo + relax * (self._level - self._lo))

    def _spread(self) -> float:
        """The recent level's spread, as a standard deviation (0 before any error)."""
        return self._mad / self._mad_w * _MAD_TO_SIGMA if self._mad_w > 0 else 0.0

    def expected(self, t: float) -> float:
        """The daily profile's value for time t (the recent level where it has none)."""
        b = self._bucket(t)
        return self._b_mean[b] if self._b_n[b] > 0 else self._level

    def state(self) -> dict[str, float]:
        """Figures for a reason: "baseline 150 ms (± 12), now 900 ms"."""
        b = self._bucket(self._t)
        seen = self._b_n[b] > 0
        spread = self._spread()
        return {
            "samples": float(self._n),
            "baseline": self._b_mean[b] if seen else self._level,
            "baseline_spread": math.sqrt(self._b_var[b]) if seen else spread,
            "level": self._level,
            "spread": spread,
            "low": self._lo,
            "high": self._hi,
            "surprise_z": self._last_z,
            "likelihood": self._last_likelihood,
        }

    @property
    def samples(self) -> int:
        """Samples learned so far (a restored baseline goes on counting)."""
        return self._n

    def snapshot(self) -> dict[str, object]:
        """Everything needed to continue exactly where this one stopped (JSON-safe)."""
        return save_slots(self, FORMAT, self.params, self.STATE)

    @classmethod
    def restore(cls, data: object, *, params: BaselineParams = BaselineParams()) -> Baseline:
        """Rebuild from snapshot(); SnapshotError if it is not one, is of another
        format, or was learned with other params (its figures would mean something else)."""
        b = cls(params=params)
        load_slots(b, data, FORMAT, params, cls.STATE)
        if len(b._b_n) != params.buckets_per_day:
            raise SnapshotError("bucket count does not match buckets_per_day")
        return b
