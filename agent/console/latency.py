"""Each check's latency over the last day, for the console's charts: bounded, in memory.

The store keeps incidents and daily uptime, not every run, so this keeps a
ring per check: one point per `BUCKET_S` (the worst latency in that span, and
whether any run in it failed), at most `POINTS` points (24 h of 5-minute
buckets = 288), so a check costs a few KB whatever its interval. It is lost on
restart: the chart then starts again from the first run (the console says
"since the agent started" when the ring is younger than a day).

`chart(points, now)` lays one out for a small inline SVG bar chart
(server-rendered, no script), failed buckets in red.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from checks.result import CheckResult

BUCKET_S = 300.0
POINTS = 288
WIDTH, HEIGHT = 288, 48


@dataclass(slots=True)
class Point:
    bucket: float
    worst_s: float
    failed: bool


class LatencyHistory:
    def __init__(self) -> None:
        self._rings: dict[str, deque[Point]] = {}
        self.last: dict[str, CheckResult] = {}

    def record(self, check: str, result: CheckResult, now: float) -> None:
        self.last[check] = result
        ring = self._rings.setdefault(check, deque(maxlen=POINTS))
        bucket = now - now % BUCKET_S
        latency = max(0.0, result.latency_s or 0.0)
        if ring and ring[-1].bucket == bucket:
            p = ring[-1]
            p.worst_s, p.failed = max(p.worst_s, latency), p.failed or not result.ok
        else:
            ring.append(Point(bucket, latency, not result.ok))

    def points(self, check: str, now: float) -> list[Point]:
        since = now - POINTS * BUCKET_S
        return [p for p in self._rings.get(check, ()) if p.bucket >= since]


def chart(points: list[Point], now: float) -> dict[str, object]:
    """What templates/console/checks.html draws: one bar per bucket on a 24 h axis (a bar
    shows even when there is one point), failed buckets red, and the scale."""
    if not points:
        return {"bars": [], "top_ms": 0, "w": WIDTH, "h": HEIGHT}
    top = max(p.worst_s for p in points) or 0.001
    start = now - POINTS * BUCKET_S
    bars = []
    for p in points:
        x = min(WIDTH - 1.0, round((p.bucket - start) / (POINTS * BUCKET_S) * WIDTH, 1))
        height = max(1.0, round(p.worst_s / top * (HEIGHT - 2), 1))
        bars.append({"x": x, "y": round(HEIGHT - height, 1), "h": height, "failed": p.failed})
    return {"bars": bars, "top_ms": max(1, round(top * 1000)), "w": WIDTH, "h": HEIGHT}
