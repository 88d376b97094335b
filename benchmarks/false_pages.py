"""False pages over time: healthy series through the agent's decision path.

    python3 benchmarks/false_pages.py [--nab ../shared/nab/data] [--checks 20] [--days 7]
    (also run by benchmarks/detection.py)

A detector that scores well on labelled anomalies can still page every night
on a healthy but noisy service. This feeds series with nothing wrong in them
through the runner's own detection pipeline (`agent.detect.pipeline.step`,
the defaults of a check with its baselines on: outage confirmation, the
response-time baseline and the error-rate baseline) and
counts the "degraded" incidents that would open, per simulated day and per
check per week (target: <= 1 per check per week).

Series:
- every NAB file without anomalies under --nab (artificialNoAnomaly: flat,
  noisy, daily, square-wave), each as one check, at its own timestamps;
- `--checks` simulated healthy web checks run every 30 s for `--days`: a
  response time with a daily rhythm (busier in the day), log-normal jitter,
  2 % of runs 3-10x slower (a GC pause, a cold cache), and 1 run in 50 failing
  at random (the blips every real target has). Seeded, so runs repeat.

Pure: no network, no clock; the time of every sample is an argument.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.detect import pipeline  # noqa: E402
from benchmarks.nab_score import parse_time  # noqa: E402
from checks.result import CheckResult, ErrorKind  # noqa: E402

DAY = 86400.0
WEEK = 7 * DAY


@dataclass
class CheckDecisions:
    """One check through the runner's detection pipeline, counting degraded incidents."""

    params: pipeline.Params = field(default_factory=lambda: pipeline.Params(baseline=True))
    state: pipeline.CheckState = field(default_factory=pipeline.CheckState)
    opened: int = 0

    def run(self, t: float, ok: bool, value: float) -> None:
        """One probe run; counts an incident when the first signal turns degraded."""
        obs = {"value": value} if self.params.baseline_observations else {}
        if ok:
            result = CheckResult(True, value, "ok", checked_at=t, observations=obs)
        else:
            result = CheckResult(False, value, "blip", ErrorKind.PROTOCOL, checked_at=t)
        was = bool(self.state.degraded_now)
        step = pipeline.step(self.state, "check", result, self.params, now=t, hold=None)
        for sig in step.signals:
            if isinstance(sig, pipeline.Degraded) and sig.degraded and not was:
                self.opened += 1
                was = True


def healthy_web_check(rng: random.Random, days: float, step: float = 30.0,
                      slow: float = 1.0, fail: float = 1 / 50
                      ) -> Iterator[tuple[float, bool, float]]:
    """(time, ok, response time in s) of a noisy but healthy target. With `slow` or
    `fail`, from 10:00 to 12:00 on day 4 it is `slow` times slower and fails that often
    (the controls: the same run must see those)."""
    start = 1_700_000_000.0  # a Tuesday; only the time of day matters
    broken = (start + 3 * DAY + 10 * 3600, start + 3 * DAY + 12 * 3600)
    for i in range(int(days * DAY / step)):
        t = start + i * step
        bad = broken[0] <= t < broken[1]
        hour = (t % DAY) / 3600.0
        busy = 1.0 + 0.5 * max(0.0, math.sin(math.pi * (hour - 7.0) / 12.0))
        latency = 0.080 * busy * rng.lognormvariate(0.0, 0.35)
        if rng.random() < 0.02:
            latency *= rng.uniform(3.0, 10.0)
        yield t, rng.random() >= (fail if bad else 1 / 50), latency * (slow if bad else 1.0)


def nab_series(folder: Path) -> Iterator[tuple[str, list[tuple[float, bool, float]]]]:
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="") as f:
            rows = [(parse_time(r["timestamp"]).replace(tzinfo=UTC).timestamp(), True,
                     float(r["value"])) for r in csv.DictReader(f)]
        yield path.name, rows


@dataclass(frozen=True)
class Tally:
    name: str
    checks: int
    days: float
    incidents: int

    @property
    def per_check_week(self) -> float:
        return self.incidents / self.checks / (self.days / 7.0) if self.days else 0.0


def count(name: str, series: Iterable[tuple[float, bool, float]], observed: bool) -> Tally:
    """`observed`: the value is an observation with a baseline (NAB's), not a latency."""
    check = CheckDecisions(pipeline.Params(baseline=not observed,
                                           baseline_observations=("value",) if observed
                                           else ()))
    first = last = None
    for t, ok, value in series:
        first = t if first is None else first
        last = t
        check.run(t, ok, value)
    days = (last - first) / DAY if first is not None and last is not None else 0.0
    return Tally(name, 1, days, check.opened)


def report(nab: Path | None, checks: int, days: float) -> list[str]:
    tallies: list[Tally] = []
    if nab is not None:
        for name, rows in nab_series(nab / "artificialNoAnomaly"):
            tallies.append(count(f"NAB {name}", rows, True))
    for seed in range(checks):
        tallies.append(count(f"web check {seed}", healthy_web_check(random.Random(seed), days),
                             False))
    lines = [f"  {'series':42s} {'days':>6s} {'incidents':>9s} {'per week':>8s}"]
    for t in tallies:
        if t.name.startswith("NAB") or t.incidents:
            lines.append(f"  {t.name:42s} {t.days:6.1f} {t.incidents:9d} "
                         f"{t.per_check_week:8.2f}")
    for label, slow, fail in (("3x slower for 2 hours", 3.0, 1 / 50),
                              ("1 run in 5 failing for 2 hours", 1.0, 1 / 5)):
        found = [count("", healthy_web_check(random.Random(seed), days, slow=slow, fail=fail),
                       False).incidents for seed in range(min(checks, 5))]
        lines.append(f"  control, the same checks {label} on day 4: incidents {found} "
                     "(each should be 1)")
    total = sum(t.incidents for t in tallies)
    check_days = sum(t.days for t in tallies)
    rate = total / (check_days / 7.0) if check_days else 0.0
    lines.append(f"  all: {len(tallies)} checks, {check_days:.0f} check-days, {total} degraded "
                 f"incidents = {total / check_days if check_days else 0:.3f} per check per day, "
                 f"{rate:.2f} per check per week   target <= 1  "
                 f"{'PASS' if rate <= 1 else 'FAIL'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    default = ROOT.parent / "shared" / "nab" / "data"
    ap.add_argument("--nab", type=Path, default=default if default.is_dir() else None,
                    help="NAB data folder (its artificialNoAnomaly series are fed too)")
    ap.add_argument("--checks", type=int, default=20, help="simulated healthy web checks")
    ap.add_argument("--days", type=float, default=7.0, help="days per simulated check")
    args = ap.parse_args(argv)
    print(f"== false pages: healthy series through the decision path ({args.checks} web "
          f"checks x {args.days:g} days at 30 s" + (", NAB no-anomaly series)" if args.nab
                                                    else ")"))
    print("\n".join(report(args.nab, args.checks, args.days)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
