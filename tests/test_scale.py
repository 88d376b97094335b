"""What keeps one agent with thousands of checks bounded (issue 19), as structure, not time:

- an idle check holds no task: the scheduler's tasks are the probes in flight;
- the first runs are spread over min(interval, max(5 s, n / 200 s)), in phase order;
- `Config.check(name)` is a lookup, not a scan.
The figures themselves are benchmarks/growth.py's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent import config as config_mod
from agent.scheduler import Scheduler, first_due, first_spread, phase_offset
from checks.base import ProbeContext
from checks.registry import KINDS, Kind
from checks.result import CheckResult
from tests.test_scheduler import check


@pytest.fixture
def parked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A probe kind that records its runs and answers at once."""
    runs: list[str] = []

    async def probe(spec: Any, ctx: ProbeContext) -> CheckResult:
        runs.append(spec)
        return CheckResult.success(0.001)

    monkeypatch.setitem(KINDS, "fake", Kind(lambda sec: None, probe, str))
    return runs


async def test_idle_checks_hold_no_task(parked: list[str]) -> None:
    before = len(asyncio.all_tasks())
    # Long intervals: after start, every check waits (its first run is seconds away).
    checks = [check(f"idle-{i}", interval=3600.0, timeout=1.0) for i in range(2000)]
    sched = Scheduler(checks, ProbeContext(), lambda c, r, late: False, max_concurrency=10)
    sched.start()
    try:
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) - before <= sched.running_count() <= 10
        assert sched.healthy()
    finally:
        await sched.stop(grace=1)
    assert not sched.healthy()


def test_first_runs_are_spread_in_phase_order() -> None:
    assert first_spread(100) == 5.0
    assert first_spread(10_000) == 50.0  # 200 first runs a second, not 2,000
    names = [f"c{i}" for i in range(10_000)]
    dues = [first_due(0.0, 400.0, phase_offset(n, 400.0), first_spread(len(names)))
            for n in names]
    assert min(dues) >= 0.0 and max(dues) < 50.0
    per_second = [0] * 50
    for d in dues:
        per_second[int(d)] += 1
    assert max(per_second) < 300  # ~200 each, no bunch
    # An interval shorter than the spread caps it: every check runs within its interval.
    assert max(first_due(0.0, 10.0, phase_offset(n, 10.0), 50.0) for n in names) < 10.0


def test_config_check_is_a_lookup(tmp_path: Path) -> None:
    body = "[agent]\nstate_dir = \"state\"\n" + "".join(
        f'[[checks]]\nname = "c{i}"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'
        for i in range(300))
    (tmp_path / "c.toml").write_text(body)
    cfg = config_mod.load(tmp_path / "c.toml")
    assert cfg.check("c299") is cfg.checks[299]
    assert cfg.check("nope") is None
    assert len(cfg._by_name) == 300  # the index, built once
