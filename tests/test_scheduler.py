"""The scheduler: phases spread checks, deadlines are enforced, a hang delays nobody,
the concurrency cap holds, and a re-check request is honoured."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import pytest

from agent.config import CheckConfig
from agent.scheduler import Scheduler, next_due, next_slot, phase_offset
from checks.base import ProbeContext
from checks.registry import KINDS, Kind
from checks.result import CheckResult, ErrorKind
from tests.support import wait_for


@pytest.mark.parametrize(
    ("now", "interval", "offset", "expected"),
    [(0.0, 10.0, 3.0, 3.0), (3.0, 10.0, 3.0, 13.0), (12.9, 10.0, 3.0, 13.0),
     (13.0, 10.0, 3.0, 23.0), (-1.0, 5.0, 0.0, 0.0)],
)
def test_next_slot(now: float, interval: float, offset: float, expected: float) -> None:
    assert next_slot(now, interval, offset) == pytest.approx(expected)


def test_phase_offsets_are_stable_and_spread() -> None:
    offsets = [phase_offset(f"check-{i}", 10.0) for i in range(1000)]
    assert offsets == [phase_offset(f"check-{i}", 10.0) for i in range(1000)]
    assert all(0 <= o < 10 for o in offsets)
    per_second = Counter(int(o) for o in offsets)
    assert min(per_second.values()) > 60 and max(per_second.values()) < 140  # ~100 each


class FakeKind:
    """A probe whose behaviour each check name chooses: 'hang-*' never answers."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.runs: Counter[str] = Counter()

    async def probe(self, spec: Any, ctx: ProbeContext) -> CheckResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.runs[spec] += 1
        try:
            if spec.startswith("hang"):
                await asyncio.Event().wait()
            await asyncio.sleep(0)
            return CheckResult.success(0.001) if not spec.startswith("fail") else \
                CheckResult.failure(ErrorKind.CONNECT, "refused")
        finally:
            self.in_flight -= 1


def check(name: str, interval: float = 0.2, timeout: float = 0.1) -> CheckConfig:
    return CheckConfig(name, "fake", interval, timeout, 3, 2, 0.05, (), "high", "", name)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKind:
    kind = FakeKind()
    monkeypatch.setitem(KINDS, "fake", Kind(lambda sec: None, kind.probe, str))
    return kind


async def test_a_hanging_check_delays_no_other(fake: FakeKind) -> None:
    results: list[tuple[str, CheckResult, float]] = []
    checks = [check("hang-1", timeout=0.15), *(check(f"ok-{i}", interval=0.1) for i in range(5))]
    sched = Scheduler(checks, ProbeContext(), lambda c, r, late: results.append((c.name, r, late))
                      or False, max_concurrency=10)
    sched.start()
    try:
        await wait_for(lambda: _at_least(results, "hang-1", 2), 10, "two timed-out runs")
        await wait_for(lambda: _at_least(results, "ok-4", 5), 10, "ok-4 to run 5 times")
    finally:
        await sched.stop(grace=1)
    hung = [r for n, r, _ in results if n == "hang-1"]
    assert all(r.error_kind is ErrorKind.TIMEOUT for r in hung)
    assert "within 0.15s" in hung[0].reason
    late = [lateness for n, _, lateness in results if n.startswith("ok")]
    assert max(late) < 0.05, f"ok checks ran late by up to {max(late):.3f}s"


async def test_concurrency_cap_holds(fake: FakeKind) -> None:
    results: list[str] = []
    checks = [check(f"hang-{i}", interval=0.3, timeout=0.2) for i in range(20)]
    sched = Scheduler(checks, ProbeContext(), lambda c, r, late: results.append(c.name) or False,
                      max_concurrency=4)
    sched.start()
    try:
        await wait_for(lambda: _count(results, 12), 20, "12 runs")
    finally:
        await sched.stop(grace=1)
    assert fake.max_in_flight == 4


async def test_recheck_runs_again_quickly(fake: FakeKind) -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    def handler(c: CheckConfig, r: CheckResult, late: float) -> bool:
        times.append(loop.time())
        return len(times) < 3  # ask for two quick re-checks, then back to the interval

    sched = Scheduler([check("fail-1", interval=2.0)], ProbeContext(), handler, max_concurrency=2)
    sched.start()
    try:
        await wait_for(lambda: _len_at_least(times, 3), 10, "three runs")
    finally:
        await sched.stop(grace=1)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.04 < g < 0.5 for g in gaps), gaps  # 50 ms re-checks, not the 2 s interval


async def _at_least(results: list[tuple[str, CheckResult, float]], name: str, n: int) -> bool:
    return sum(1 for r in results if r[0] == name) >= n


async def _count(results: list[str], n: int) -> bool:
    return len(results) >= n


async def _len_at_least(items: list[float], n: int) -> bool:
    return len(items) >= n


@pytest.mark.parametrize(
    ("now", "due", "recheck", "expected"),
    [
        (13.001, 13.0, False, 23.0),  # ran on time: the next slot
        (12.998, 13.0, False, 23.0),  # the timer fired early and the probe was instant
        (25.5, 13.0, False, 33.0),  # a long run skips the slots it overlapped
        (13.2, 13.0, True, 13.2 + 0.05),  # a re-check: recheck_interval after the run
    ],
)
def test_next_due(now: float, due: float, recheck: bool, expected: float) -> None:
    c = check("x", interval=10.0)
    assert next_due(now, due, c, 3.0, recheck) == pytest.approx(expected)
