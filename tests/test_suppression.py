"""Maintenance windows and dependencies on a fake clock: the real runner, engine and store,
fed CheckResults by the test instead of the scheduler."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.config import Config, load
from agent.detect.maintenance import MaintenanceWindow, active_window
from agent.detect.outage import OutageState
from agent.engine import Engine
from agent.metrics import Metrics
from agent.policy import BusinessHours
from agent.runner import Runner
from agent.store.sqlite import Store
from checks.result import CheckResult, ErrorKind
from tests.pg import Opener

LONDON = ZoneInfo("Europe/London")


def utc(*a: int) -> float:
    return dt.datetime(*a, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("when", "active"),
    [
        (utc(2026, 3, 22, 2, 30), True),    # GMT: local 02:30
        (utc(2026, 3, 29, 1, 30), True),    # BST from 01:00 UTC: local 02:30
        (utc(2026, 3, 29, 3, 30), False),   # local 04:30
        (utc(2026, 10, 25, 1, 30), False),  # GMT again from 01:00 UTC: local 01:30
        (utc(2026, 10, 25, 2, 30), True),   # local 02:30
        (utc(2026, 10, 26, 2, 30), False),  # a Monday
    ],
)
def test_weekly_window_follows_local_time_across_dst(when: float, active: bool) -> None:
    from agent.policy import parse_openings

    weekly = BusinessHours(LONDON, tuple(parse_openings("sun 02:00-04:00") or ()))
    w = MaintenanceWindow("w", frozenset({"backup"}), weekly=weekly)
    assert (active_window([w], "backup", (), when) is w) is active
    assert active_window([w], "other", (), when) is None


def test_one_off_window_and_tags() -> None:
    w = MaintenanceWindow("w", tags=frozenset({"pos"}), start=100.0, end=200.0)
    assert active_window([w], "till-1", ("pos",), 150.0) is w
    assert active_window([w], "till-1", ("pos",), 200.0) is None
    assert active_window([w], "web", ("shop",), 150.0) is None


class Clock:
    def __init__(self) -> None:
        self.now = utc(2026, 11, 24, 12, 0)

    def __call__(self) -> float:
        return self.now


CONFIG = """
[agent]
state_dir = "st"
timezone = "Europe/London"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/a"]
[defaults]
contacts = ["alice"]
confirm = 1
recover = 1
[[checks]]
name = "router"
type = "tcp"
host = "127.0.0.1"
port = 1
[[checks]]
name = "pos-api"
type = "tcp"
host = "127.0.0.1"
port = 2
depends_on = ["router"]
tags = ["pos"]
[[maintenance]]
tags = ["pos"]
start = "2026-11-24 13:00"
duration = "1h"
reason = "till upgrade"
"""


@pytest.fixture
def world(tmp_path: Path, store_opener: Opener) -> tuple[Runner, Store, Clock, Config]:
    """The runner and engine on both stores (tests/pg.py)."""
    (tmp_path / "c.toml").write_text(CONFIG)
    cfg = load(tmp_path / "c.toml")
    store = store_opener()
    clock = Clock()
    engine = Engine(cfg, store, Metrics(), b"k" * 32, clock)
    return Runner(cfg, engine, engine.metrics, clock), store, clock, cfg


def run(world: tuple[Runner, Store, Clock, Config], name: str, ok: bool, at: float) -> None:
    runner, _, clock, cfg = world
    clock.now = at
    check = cfg.check(name)
    assert check is not None
    res = CheckResult(ok, 0.01, "ok" if ok else "connection refused",
                      None if ok else ErrorKind.CONNECT, at)
    runner.on_result(check, res, 0.0)


def opened(store: Store) -> list[tuple[int, str | None, str]]:
    return [(i.id, i.check, i.state.value) for i in reversed(store.incidents())]


def test_down_in_maintenance_pages_nobody_and_pages_once_after(world) -> None:  # type: ignore[no-untyped-def]
    _, store, _, _ = world
    t = utc(2026, 11, 24, 13, 10)  # inside the window (local 13:10 GMT)
    run(world, "pos-api", False, t)
    run(world, "pos-api", False, t + 60)
    assert opened(store) == []
    run(world, "pos-api", False, utc(2026, 11, 24, 14, 1))  # the window is over, still down
    run(world, "pos-api", False, utc(2026, 11, 24, 14, 2))
    assert opened(store) == [(1, "pos-api", "open")]
    assert len(store.messages(1)) == 1  # one page, not one per failure inside


def test_recovered_inside_the_window_never_pages(world) -> None:  # type: ignore[no-untyped-def]
    _, store, _, _ = world
    run(world, "pos-api", False, utc(2026, 11, 24, 13, 10))
    run(world, "pos-api", True, utc(2026, 11, 24, 13, 20))
    run(world, "pos-api", True, utc(2026, 11, 24, 14, 10))
    assert opened(store) == []


def test_child_outage_is_attached_to_the_parent(world) -> None:  # type: ignore[no-untyped-def]
    _, store, _, _ = world
    t = utc(2026, 11, 24, 12, 0)
    run(world, "router", False, t)
    run(world, "pos-api", False, t + 5)
    assert opened(store) == [(1, "router", "open")]
    notes = [e.message for e in store.timeline(1) if e.kind == "note"]
    assert notes and "pos-api is down too" in notes[0]
    # The router comes back, the POS API does not: now it pages on its own.
    run(world, "router", True, t + 60)
    run(world, "pos-api", False, t + 65)
    assert opened(store) == [(1, "router", "resolved"), (2, "pos-api", "open")]


def test_child_confirming_before_its_failing_parent_waits(world) -> None:  # type: ignore[no-untyped-def]
    runner, store, _, cfg = world
    t = utc(2026, 11, 24, 12, 0)
    router = cfg.check("router")
    assert router is not None
    # The router's first failure is not confirmed yet (confirm = 2 for this test).
    runner._states["router"].outage = OutageState(fails=1)
    run(world, "pos-api", False, t)
    assert opened(store) == []
    run(world, "router", False, t + 2)
    assert opened(store) == [(1, "router", "open")]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('depends_on = ["router"]', 'depends_on = ["ruoter"]',
         'checks[1] "pos-api": depends_on: no check named "ruoter"'),
        ('depends_on = ["router"]', 'depends_on = ["pos-api"]',
         'checks[1] "pos-api": depends_on: a check cannot depend on itself'),
        ('port = 1\n', 'port = 1\ndepends_on = ["pos-api"]\n',
         'checks[0] "router": depends_on: a dependency cycle: router -> pos-api -> router'),
        ('tags = ["pos"]\n[[maintenance]]\ntags = ["pos"]', 'tags = ["pos"]\n[[maintenance]]\n'
         'tags = ["till"]', 'maintenance[0]: tags: no check has the tag "till"'),
        ('start = "2026-11-24 13:00"', 'start = "24/11/2026"',
         'maintenance[0]: start: must be a local date and time like "2026-12-01 22:00", '
         'got "24/11/2026"'),
        ('start = "2026-11-24 13:00"\nduration = "1h"', 'weekly = ["sunday 2am"]',
         'maintenance[0]: weekly[0]: must read like "sun 02:00-04:00", got "sunday 2am"'),
    ],
)
def test_config_problems(tmp_path: Path, old: str, new: str, problem: str) -> None:
    from agent.config import ConfigError

    assert old in CONFIG
    (tmp_path / "c.toml").write_text(CONFIG.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "c.toml")
    assert problem in err.value.problems, err.value.problems


def test_flapping_check_becomes_one_incident_until_it_settles(world) -> None:  # type: ignore[no-untyped-def]
    _, store, _, _ = world
    t = utc(2026, 11, 24, 12, 0)
    seq = "dduu" * 10 + "u" * 25
    for i, ch in enumerate(seq):
        run(world, "router", ch == "u", t + 30 * i)
    incs = store.incidents(limit=100)
    flapping = [i for i in incs if i.title == "router is flapping"]
    assert len(flapping) == 1 and flapping[0].state.value == "resolved"
    # Before flapping was recognised a couple of ordinary incidents came and went;
    # after it, the remaining 8 ups and downs paged nobody.
    assert len(incs) <= 3
    kinds = [e.kind for e in store.timeline(flapping[0].id)]
    assert "flapping" in kinds and kinds[-1] in ("resolved", "notification_queued")


def test_sustained_slowdown_opens_a_low_degraded_incident_and_recovers(world) -> None:  # type: ignore[no-untyped-def]
    import random

    runner, store, clock, cfg = world
    check = cfg.check("router")
    assert check is not None
    rng = random.Random(3)
    t = utc(2026, 11, 24, 0, 0)

    def feed(level: float, n: int) -> None:
        nonlocal t
        for _ in range(n):
            t += 30
            clock.now = t
            latency = max(0.001, rng.gauss(level, level * 0.05))
            runner.on_result(check, CheckResult(True, latency, "ok", None, t), 0.0)

    feed(0.150, 3000)  # a day and a bit: the baseline's warm-up is a day
    assert store.incidents() == []
    feed(0.900, 25)  # confirmed over 10 minutes
    incs = store.incidents()
    assert [(i.kind, i.severity, i.state.value) for i in incs] == [("degraded", "low", "open")]
    assert incs[0].title == "router is degraded"
    assert re.search(r"baseline 1\d\d ms, now (8|9)\d\d ms", incs[0].reason), incs[0].reason
    assert store.messages(incs[0].id)[0].title.startswith("[DEGRADED] router")
    feed(0.150, 25)
    assert store.incident(incs[0].id).state.value == "resolved"  # type: ignore[union-attr]


def test_a_named_observation_learns_its_baseline_too(world) -> None:  # type: ignore[no-untyped-def]
    import random
    from dataclasses import replace

    runner, store, clock, cfg = world
    base = cfg.check("router")
    assert base is not None
    check = replace(base, baseline=False, baseline_observations=("cpu_percent",))
    rng = random.Random(5)
    t = utc(2026, 11, 24, 0, 0)
    for i in range(3025):
        t += 30
        clock.now = t
        cpu = rng.gauss(10.0 if i < 3000 else 80.0, 0.5)
        runner.on_result(check, CheckResult(True, 0.01, "ok", None, t, {"cpu_percent": cpu}),
                         0.0)
    incs = store.incidents()
    assert [(i.kind, i.severity) for i in incs] == [("degraded", "low")]
    assert re.match(r"cpu_percent: baseline (9\.9\d?|10\.\d|10), now (79\.\d|80\.\d) over",
                    incs[0].reason), incs[0].reason
