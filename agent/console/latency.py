"""Each check's latency over the last day, for the console's charts: bounded, in memory.

The store keeps incidents and daily uptime, not every run, so this keeps a
ring per check: one point per `BUCKET_S` (the worst latency in that span, and
whether any run in it failed), at most `POINTS` points (24 h of 5-minute
buckets = 288), so a check costs a few KB whatever its interval. It is lost on
restart: the chart then starts again from the first run (the console says
"since the agent started" when the ring is younger than a day).

`svg(points, now)` draws one as a small inline SVG polyline (server-rendered,
no script), with failed buckets marked in red.
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
    """What templates/console/_latency.svg draws: the line, failures, the scale."""
    if not points:
        return {"line": "", "fails": [], "top_ms": 0, "w": WIDTH, "h": HEIGHT}
    top = max(p.worst_s for p in points) or 0.001
    start = now - POINTS * BUCKET_S

    def x(p: Point) -> float:
        return round((p.bucket - start) / (POINTS * BUCKET_S) * WIDTH, 1)

    def y(p: Point) -> float:
        return round(HEIGHT - 2 - (p.worst_s / top) * (HEIGHT - 4), 1)

    line = " ".join(f"{x(p)},{y(p)}" for p in points)
    fails = [x(p) for p in points if p.failed]
    return {"line": line, "fails": fails, "top_ms": round(top * 1000), "w": WIDTH, "h": HEIGHT}
