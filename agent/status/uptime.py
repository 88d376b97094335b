"""Daily uptime per check, rolled up as the checks run: about 90 rows a check, ever.

Each result attributes the time since the check's previous result to the
state it was in then: up, down (its confirmed health was down) or
maintenance (down inside a maintenance window: planned, so not held against
the percentage). Gaps longer than two intervals (the agent was stopped) are
not counted at all. Time is split at local midnight in the business's time
zone, because "Tuesday" on the page is the business's Tuesday.

Accumulated in memory and written in one transaction a minute (`flush`), so
500 checks a second cost the store nothing per run; a crash loses at most a
minute of uptime accounting, never an incident. Rows older than
RETAIN_DAYS are pruned on the way.

`Rollup.record` is pure arithmetic on the time given; only `flush` writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from agent.config import CheckConfig
from agent.detect.maintenance import MaintenanceWindow, active_window
from agent.detect.outage import Health
from agent.store.status import RETAIN_DAYS, StatusStore

UP, DOWN, MAINT = 0, 1, 2
#: Longest stretch one result accounts for, in check intervals.
GAP_INTERVALS = 2.0


def day_of(ts: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ts, tz).date().isoformat()


def day_bounds(ts: float, tz: ZoneInfo) -> tuple[str, float, float]:
    """The local day of `ts`, and when it starts and ends (DST-aware: 23 or 25 h days)."""
    d = dt.datetime.fromtimestamp(ts, tz).date()
    start = dt.datetime.combine(d, dt.time(), tz).timestamp()
    end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), tz).timestamp()
    return d.isoformat(), start, end


@dataclass(slots=True)
class _Last:
    at: float
    state: int


class Rollup:
    def __init__(self, store: StatusStore, tz: ZoneInfo) -> None:
        self.store = store
        self.tz = tz
        self._last: dict[str, _Last] = {}
        self._acc: dict[tuple[str, str], list[float]] = {}
        self._day = ("", 0.0, 0.0)

    def _bounds(self, ts: float) -> tuple[str, float, float]:
        day = self._day
        if not day[1] <= ts < day[2]:
            day = self._day = day_bounds(ts, self.tz)
        return day

    def record(self, check: str, state: int, now: float, interval: float) -> None:
        last = self._last.get(check)
        self._last[check] = _Last(now, state)
        if last is None or now <= last.at or now - last.at > GAP_INTERVALS * interval + 60:
            return
        t = last.at
        for _ in range(4):  # a stretch spans at most a few midnights: bounded
            day, _start, end = self._bounds(t)
            upto = min(now, end)
            acc = self._acc.get((check, day))
            if acc is None:
                acc = self._acc[(check, day)] = [0.0, 0.0, 0.0]
            acc[last.state] += upto - t
            if upto >= now:
                break
            t = upto

    def flush(self, now: float) -> int:
        """Write what accumulated (one transaction) and prune old days; returns rows written."""
        rows = [(check, day, a[UP], a[DOWN], a[MAINT]) for (check, day), a in self._acc.items()]
        self._acc = {}
        oldest = day_of(now - RETAIN_DAYS * 86400, self.tz)
        with self.store.store.tx():
            if rows:
                self.store.add_uptime(rows)
            self.store.prune_uptime(oldest)
        return len(rows)


def recorder(rollup: Rollup, health: Callable[[str], Health],
             windows: Callable[[float], tuple[MaintenanceWindow, ...]], clock: Callable[[], float]
             ) -> Callable[[CheckConfig, float | None], None]:
    """The scheduler-side hook: after each result, account for the check's time."""

    def record(check: CheckConfig, at: float | None) -> None:
        now = at or clock()
        state = UP
        if health(check.name) is Health.DOWN:
            state = MAINT if active_window(windows(now), check.name, check.tags, now) else DOWN
        rollup.record(check.name, state, now, check.interval)

    return record
