"""What keeps one agent with thousands of checks bounded (issue 19), as structure, not time:

- an idle check holds no task: the scheduler's tasks are the probes in flight;
- the first runs are spread over min(interval, max(5 s, n / 200 s)), in phase order;
- a check exports a fixed, small number of series at the defaults (buckets are
  opt-in; a result it never had has no series), and a scrape re-renders only the
  checks that changed;
- `Config.check(name)` is a lookup, not a scan.
The figures themselves are benchmarks/growth.py's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent import config as config_mod
from agent.config_service import ServiceSettings
from agent.metrics import Metrics
from agent.scheduler import Scheduler, first_due, first_spread, phase_offset
from checks.base import ProbeContext
from checks.registry import KINDS, Kind
from checks.result import CheckResult, ErrorKind
from tests.test_scheduler import check

#: What a default http check observes (no phase_timings): a fingerprint is not exported.
HTTP_OBS = {"status_code": 200.0, "body_bytes_read": 2.0, "content_fingerprint": 1.0}


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


def _record(metrics: Metrics, names: list[str]) -> None:
    for name in names:
        cm = metrics.for_check(name)
        cm.record(CheckResult.success(0.01, "HTTP 200", HTTP_OBS))
        cm.set_up(True)


def test_series_per_check_at_the_defaults() -> None:
    metrics = Metrics()
    empty = metrics.checks.series_count()
    _record(metrics, [f"c{i}" for i in range(100)])
    per_check = (metrics.checks.series_count() - empty) / 100
    # up, runs{ok}, duration +Inf/_sum/_count, status code, body size: nothing per
    # bucket or result that the check has not asked for or had.
    assert per_check == 7
    failing = metrics.for_check("c0")
    failing.record(CheckResult.failure(ErrorKind.CONNECT, "refused"))
    assert metrics.checks.series_count() - empty == 701  # one result it has had: one series


def test_opt_in_series_add_what_they_say() -> None:
    metrics = Metrics(settings=ServiceSettings(check_duration_buckets=(0.1, 1.0)))
    empty = metrics.checks.series_count()
    _record(metrics, ["c0"])
    assert metrics.checks.series_count() - empty == 7 + 2  # one series per bucket
    text = b"".join(metrics.exposition_parts()).decode()
    assert 'onwatch_check_duration_seconds_bucket{check="c0",le="0.1"} 1.0' in text
    assert 'onwatch_check_duration_seconds_bucket{check="c0",le="+Inf"} 1.0' in text


def test_a_scrape_renders_only_what_changed() -> None:
    metrics = Metrics()
    _record(metrics, [f"c{i}" for i in range(50)])
    metrics.exposition_parts()
    assert metrics.checks.dirty == []
    metrics.for_check("c7").record(CheckResult.success(0.02))
    assert [cm.name for cm in metrics.checks.dirty] == ["c7"]
    lines = {n: metrics.checks.checks[n].lines for n in ("c6", "c7")}
    metrics.exposition_parts()
    assert metrics.checks.checks["c6"].lines is lines["c6"]  # untouched: the same bytes
    assert metrics.checks.checks["c7"].lines is not lines["c7"]


def test_config_check_is_a_lookup(tmp_path: Path) -> None:
    body = "[agent]\nstate_dir = \"state\"\n" + "".join(
        f'[[checks]]\nname = "c{i}"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'
        for i in range(300))
    (tmp_path / "c.toml").write_text(body)
    cfg = config_mod.load(tmp_path / "c.toml")
    assert cfg.check("c299") is cfg.checks[299]
    assert cfg.check("nope") is None
    assert len(cfg._by_name) == 300  # the index, built once
