"""Taking over (agent/relay.py Leading, Runner.catch_up), in process on both stores.

A standby runs checks but opens nothing. When it becomes the leader it reloads
open incidents from the store, and what it saw meanwhile that the store does
not show -- the last leader died before acting on it -- is acted on at once.
"""

from __future__ import annotations

from pathlib import Path

from agent.config import load
from agent.engine import Engine
from agent.incidents import State
from agent.metrics import Metrics
from agent.runner import Runner
from agent.store.base import Store
from checks.result import CheckResult, ErrorKind
from tests.pg import Opener

CONFIG = """
[agent]
state_dir = "st"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/a"]
[defaults]
contacts = ["alice"]
confirm = 1
recover = 1
[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = 1
[[checks]]
name = "web"
type = "tcp"
host = "127.0.0.1"
port = 2
"""


def _world(tmp_path: Path, store: Store) -> tuple[Runner, Engine, list[float]]:
    (tmp_path / "c.toml").write_text(CONFIG)
    cfg = load(tmp_path / "c.toml")
    now = [1_760_000_000.0]
    engine = Engine(cfg, store, Metrics(), b"k" * 32, lambda: now[0])
    runner = Runner(cfg, engine, engine.metrics, lambda: now[0])
    engine.after_takeover = runner.catch_up
    return runner, engine, now


def _result(runner: Runner, name: str, ok: bool, at: float) -> None:
    check = runner.config.check(name)
    assert check is not None
    runner.on_result(check, CheckResult(ok, 0.01, "ok" if ok else "connection refused",
                                        None if ok else ErrorKind.CONNECT, at), 0.0)


def test_a_standby_opens_nothing_and_catches_up_when_it_takes_over(
        tmp_path: Path, store_opener: Opener) -> None:
    store = store_opener()
    runner, engine, now = _world(tmp_path, store)
    engine.lead(False)
    _result(runner, "pos", False, now[0])
    assert store.incidents() == [] and engine.pending.problem is None
    now[0] += 10
    engine.lead(True)  # the leader died before opening pos's incident
    [inc] = store.incidents()
    assert (inc.check, inc.state) == ("pos", State.OPEN)
    assert "took over" in inc.reason
    assert len(store.messages(inc.id)) == 1  # alice is paged


def test_an_outage_that_ended_while_standing_by_is_resolved_on_taking_over(
        tmp_path: Path, store_opener: Opener) -> None:
    store = store_opener()
    leader_runner, _, now = _world(tmp_path, store)
    _result(leader_runner, "web", False, now[0])  # the old leader opens web's incident
    [inc] = store.open_incidents()
    (tmp_path / "b").mkdir()
    standby_runner, standby, _ = _world(tmp_path / "b", store)
    standby.lead(False)
    standby_runner.restore()
    now[0] += 10
    _result(standby_runner, "web", True, now[0])  # it recovers; the old leader is gone
    assert _state(store, inc.id) is State.OPEN
    standby.lead(True)
    assert _state(store, inc.id) is State.RESOLVED


def _state(store: Store, incident_id: int) -> State | None:
    inc = store.incident(incident_id)
    return None if inc is None else inc.state
