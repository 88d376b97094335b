"""Timers survive wall-clock steps: escalation, heartbeat deadlines and retries wait on
elapsed (monotonic) time, so an injected wall clock jumping +-1 h neither fires nor
stalls them; the times stored are still Unix times, so restarts recover as before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.config import load
from agent.engine import Engine
from agent.metrics import Metrics
from agent.steadyclock import SteadyClock
from agent.store.sqlite import Store
from agent.vocab import Severity
from checks import heartbeat
from checks.base import ProbeContext

HOUR = 3600.0


class Wall:
    """A wall clock that a test can step: the real time plus an offset."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_the_steady_clock_ignores_wall_steps_and_reports_them() -> None:
    mono, wall = [100.0], [1_000_000.0]
    clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    assert clock() == 1_000_000.0
    mono[0] += 5
    wall[0] += 5 + HOUR  # five seconds pass, and the wall clock jumps an hour ahead
    assert clock() == 1_000_005.0
    assert clock.check_step() == HOUR
    mono[0] += 10
    wall[0] += 10 - 2 * HOUR  # ten more seconds, and back: an hour behind
    assert clock() == 1_000_015.0
    assert clock.check_step() == pytest.approx(-HOUR)


def _config(tmp_path: Path, after: float) -> Path:
    cfg = tmp_path / "onwatch.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp_path / 'state'}"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/alice"]
[[contacts]]
name = "owner"
urls = ["json://127.0.0.1:9/owner"]
[[policies]]
name = "chain"
ack_timeout = "off"
[[policies.steps]]
notify = ["alice"]
[[policies.steps]]
after = "{after:g}s"
notify = ["owner"]
[[checks]]
name = "nightly"
type = "heartbeat"
period = "1h"
token = "a-heartbeat-token-for-the-test"
policy = "chain"
""")
    return cfg


def _queued_for(store: Store, contact: str) -> int:
    return len([m for m in store.due_messages(time.time() + 10 * HOUR) if m.contact == contact])


@pytest.mark.parametrize("jump", [HOUR, -HOUR])
async def test_an_escalation_step_is_due_by_elapsed_time_whatever_the_wall_clock_does(
        tmp_path: Path, jump: float) -> None:
    after = 1.5
    config = load(_config(tmp_path, after))
    store = Store.open(config.agent.state_dir)
    wall = Wall()
    clock = SteadyClock(wall)
    engine = Engine(config, store, Metrics(), b"k" * 32, clock)
    task = asyncio.create_task(engine.run())
    try:
        engine.declare(title="POS down", severity=Severity.HIGH, policy="chain", by="test",
                       reason="")
        opened = time.monotonic()
        assert _queued_for(store, "alice") == 1
        wall.offset = jump  # the step: an hour ahead, or an hour behind
        engine._wakeup.set()  # as any other event would wake the loop
        step2_at = None
        for _ in range(100):  # bounded: 5 s
            await asyncio.sleep(0.05)
            if _queued_for(store, "owner"):
                step2_at = time.monotonic() - opened
                break
        assert step2_at is not None, "step 2 never came (it waited on the wall clock)"
        assert step2_at >= after - 0.1, f"step 2 fired {step2_at:.2f}s in: the jump fired it"
        [inc] = store.open_incidents()
        assert abs(inc.opened_at - time.time()) < 10  # stored times are still Unix times
    finally:
        engine.stop()
        await asyncio.wait_for(task, 5)
        store.close()


def test_a_heartbeat_deadline_is_elapsed_time_too(tmp_path: Path) -> None:
    config = load(_config(tmp_path, 60))
    [check] = config.checks
    mono, wall = [0.0], [1_000_000.0]
    ctx = ProbeContext(clock=SteadyClock(lambda: wall[0], lambda: mono[0]))
    ctx.heartbeats["nightly"] = ctx.clock()  # a ping just arrived
    mono[0] += 60
    wall[0] += 60 + 3 * HOUR  # the wall clock leaps past the 1 h period (+ 5 min grace)
    result = asyncio.run(heartbeat.probe(check.spec, ctx))
    assert result.ok, result.reason
