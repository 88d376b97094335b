"""Baselines survive restarts: learned state to the store and back (agent/learning.py).

The real runner, engine and store (SQLite and PostgreSQL) on a fake clock, fed
CheckResults by the test: what is restored continues exactly where the
original stopped, and what cannot be used is discarded with a log line naming
the check and why.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.config import Config, load
from agent.detect import learned, pipeline
from agent.detect.baseline import BaselineParams
from agent.detect.pipeline import RESPONSE_TIME, CheckState, Params
from agent.detect.snapshot import SnapshotError
from agent.engine import Engine
from agent.learning import Keeper
from agent.metrics import Metrics
from agent.runner import Runner
from agent.store.base import Store
from agent.store.baselines import BaselineStore
from agent.store.sqlite import SqliteStore
from checks.result import CheckResult, ErrorKind
from tests.pg import Opener

T0 = 1_780_000_000.0
STEP = 30.0


def _latency(i: int) -> float:
    """A daily rhythm with deterministic jitter: 100-160 ms."""
    t = T0 + i * STEP
    return 0.12 + 0.02 * math.sin(2 * math.pi * t / 86400) + 0.02 * math.sin(i * 1.7)


def _result(i: int, *, slow: float = 1.0) -> CheckResult:
    ok = i % 97 != 0  # now and then a failed run, for the error rate
    return CheckResult(ok, _latency(i) * slow, "ok" if ok else "refused",
                       None if ok else ErrorKind.CONNECT, T0 + i * STEP)


def _feed(st: CheckState, start: int, stop: int, p: Params, slow: float = 1.0
          ) -> list[pipeline.CheckSignal]:
    out: list[pipeline.CheckSignal] = []
    for i in range(start, stop):
        res = _result(i, slow=slow if i >= start + 60 else 1.0)
        out += pipeline.step(st, "web", res, p, now=res.checked_at, hold=None).signals
    return out


P = Params(baseline=True, confirm=3)


def test_restored_state_scores_and_decides_as_the_original() -> None:
    original = CheckState()
    _feed(original, 0, 3500, P)  # 29 hours: past the baselines' warm-up
    data = json.loads(json.dumps(learned.save(original)))
    restored = CheckState()
    assert learned.load(restored, data, P) == []
    assert learned.samples(restored) == learned.samples(original)
    assert learned.samples(restored)[RESPONSE_TIME] > 3000
    # A slow-down after the restart: the same degraded incident at the same run.
    a, b = _feed(original, 3500, 4000, P, slow=4.0), _feed(restored, 3500, 4000, P, slow=4.0)
    assert a == b
    assert any(isinstance(s, pipeline.Degraded) and s.degraded for s in a)
    assert learned.save(restored) == learned.save(original)
    # And a fresh state (what a restart did before) sees nothing: it is still learning.
    fresh = CheckState()
    assert not any(isinstance(s, pipeline.Degraded) for s in
                   _feed(fresh, 3500, 4000, P, slow=4.0))


@pytest.mark.parametrize(("change", "why"), [
    (lambda d: d.update(format=99), "format 99"),
    (lambda d: d["baselines"][RESPONSE_TIME]["baseline"].update(format=1), "format 1"),
    (lambda d: d["baselines"][RESPONSE_TIME]["decision"].update(streak="3"), "streak"),
    (lambda d: d["baselines"][RESPONSE_TIME]["baseline"]["state"]["b_mean"].pop(), "list"),
    (lambda d: d["errors"].update(state={}), "fields"),
    (lambda d: d.pop("errors"), "fields"),
])
def test_incompatible_state_is_refused_whole(change, why: str) -> None:  # type: ignore[no-untyped-def]
    st = CheckState()
    _feed(st, 0, 200, P)
    data = json.loads(json.dumps(learned.save(st)))
    change(data)
    target = CheckState()
    with pytest.raises(SnapshotError, match=why):
        learned.load(target, data, P)
    assert target.baselines == {} and target.errors.samples == 0  # nothing half-loaded


def test_signals_no_longer_learned_are_left_out() -> None:
    p = Params(baseline=True, baseline_observations=("cpu",))
    st = CheckState()
    for i in range(100):
        res = CheckResult(True, 0.1, "ok", None, T0 + i * STEP, observations={"cpu": 20.0})
        pipeline.step(st, "web", res, p, now=res.checked_at, hold=None)
    data = learned.save(st)
    again = CheckState()
    assert learned.load(again, data, P) == ["cpu"]
    assert set(again.baselines) == {RESPONSE_TIME}


# --- through the real runner, engine and store ------------------------------------------

CONFIG = """
[agent]
state_dir = "{state}"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/a"]
[defaults]
contacts = ["alice"]
[[checks]]
name = "web"
type = "http"
url = "http://127.0.0.1:1/"
interval = "{interval}"
[[checks]]
name = "quiet"
type = "tcp"
host = "127.0.0.1"
port = 1
baseline = false
"""


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


def _agent(tmp_path: Path, opener: Opener | None = None, interval: str = "30s"
           ) -> tuple[Runner, Keeper, Store, Config]:
    """An agent's runner and keeper over the test's store (`opener`; None: SQLite in the
    config's state directory)."""
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(CONFIG.format(state=tmp_path / "st", interval=interval))
    cfg = load(cfg_file)
    store = opener() if opener is not None else SqliteStore.open(cfg.agent.state_dir)
    clock = Clock()
    metrics = Metrics()
    engine = Engine(cfg, store, metrics, b"k" * 32, clock)
    runner = Runner(cfg, engine, metrics, clock)
    runner.restore()
    return runner, Keeper(runner, store, metrics.store_errors.inc, clock), store, cfg


def _run(runner: Runner, cfg: Config, start: int, stop: int) -> None:
    check = cfg.check("web")
    assert check is not None
    for i in range(start, stop):
        runner.on_result(check, _result(i), 0.0)


def test_a_restart_continues_from_the_stored_state(tmp_path: Path,
                                                   store_opener: Opener) -> None:
    runner, keeper, store, cfg = _agent(tmp_path, store_opener)
    _run(runner, cfg, 0, 400)
    assert keeper.save()
    store.close()
    again, keeper2, store2, cfg2 = _agent(tmp_path, store_opener)
    with capture_logs() as logs:
        keeper2.restore()
    restored = [e for e in logs if e["event"] == "baseline_state_restored"]
    assert [e["check"] for e in restored] == ["web"]  # "quiet" learns nothing
    assert restored[0]["samples"][RESPONSE_TIME] == 400 - 400 // 97 - 1
    st1, st2 = runner.state("web"), again.state("web")
    assert st1 is not None and st2 is not None
    assert learned.save(st2) == learned.save(st1)
    _run(runner, cfg, 400, 500)
    _run(again, cfg2, 400, 500)
    assert learned.save(st2) == learned.save(st1)
    store2.close()


def test_changed_interval_discards_with_a_log_line(tmp_path: Path,
                                                   store_opener: Opener) -> None:
    runner, keeper, store, cfg = _agent(tmp_path, store_opener)
    _run(runner, cfg, 0, 100)
    assert keeper.save()
    store.close()
    again, keeper2, store2, _ = _agent(tmp_path, store_opener, interval="1m")
    with capture_logs() as logs:
        keeper2.restore()
    [ev] = [e for e in logs if e["event"] == "baseline_state_discarded"]
    assert ev["check"] == "web" and "interval changed from 30s to 1m" in ev["why"]
    st = again.state("web")
    assert st is not None and st.baselines == {}
    assert BaselineStore(store2).load() == {}  # not discarded again at the next start
    store2.close()


def test_other_version_or_garbage_is_discarded_with_a_log_line(tmp_path: Path,
                                                               store_opener: Opener) -> None:
    runner, keeper, store, cfg = _agent(tmp_path, store_opener)
    _run(runner, cfg, 0, 100)
    assert keeper.save()
    row = BaselineStore(store).load()["web"]
    data = json.loads(row.state)
    data["baselines"][RESPONSE_TIME]["baseline"]["format"] = 1  # an older onwatch's
    for text, why in ((json.dumps(data), "format 1, this version reads"),
                      ("{not json", "does not parse")):
        with store.tx():
            store.db.execute("UPDATE baseline_state SET state = ?", (text,))
        runner2, keeper2, store2, _ = _agent(tmp_path, store_opener)
        with capture_logs() as logs:
            keeper2.restore()
        [ev] = [e for e in logs if e["event"] == "baseline_state_discarded"]
        assert ev["check"] == "web" and why in ev["why"], ev
        st = runner2.state("web")
        assert st is not None and st.baselines == {}
        store2.close()
        assert keeper.save()  # the first agent writes its good state again
    store.close()


def test_state_learned_with_other_parameters_is_refused() -> None:
    st = CheckState()
    _feed(st, 0, 100, P)
    data = learned.save(st)
    assert data is not None
    # What a version with another default level half-life wrote.
    assert BaselineParams().level_halflife_s != 60.0
    data["baselines"][RESPONSE_TIME]["baseline"]["params"]["level_halflife_s"] = 60.0
    with pytest.raises(SnapshotError, match="other parameters"):
        learned.load(CheckState(), data, P)


def test_a_refused_write_is_logged_once_and_retried(tmp_path: Path) -> None:
    """SQLite locked by another process (the PostgreSQL store's refusals are its errors
    too, through the same `store.errors`)."""
    runner, keeper, store, cfg = _agent(tmp_path)
    _run(runner, cfg, 0, 50)
    errors = runner.metrics.store_errors
    other = sqlite3.connect(cfg.agent.state_dir / "onwatch.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with capture_logs() as logs:
            assert not keeper.save()
            assert not keeper.save()
        assert [e["event"] for e in logs] == ["baseline_state_write_failed"]
        assert errors._value.get() == 2
        _run(runner, cfg, 50, 60)  # detection goes on meanwhile
    finally:
        other.execute("ROLLBACK")
        other.close()
    with capture_logs() as logs:
        assert keeper.save()
    assert [e["event"] for e in logs] == ["baseline_state_write_recovered"]
    row = BaselineStore(store).load()["web"]
    assert learned.samples(runner.state("web"))[RESPONSE_TIME] == 59  # type: ignore[arg-type]
    assert json.loads(row.state)["baselines"][RESPONSE_TIME]["baseline"]["state"]["n"] == 59
    store.close()


def test_removed_checks_lose_their_rows(tmp_path: Path, store_opener: Opener) -> None:
    runner, keeper, store, cfg = _agent(tmp_path, store_opener)
    _run(runner, cfg, 0, 20)
    assert keeper.save()
    table = BaselineStore(store)
    with store.tx():
        store.db.execute("INSERT INTO baseline_state VALUES ('gone', '{}', '{}', 0)")
    assert set(table.load()) == {"web", "gone"}
    assert keeper.save()
    assert set(table.load()) == {"web"}
    store.close()


def test_only_the_leader_writes(tmp_path: Path, store_opener: Opener) -> None:
    runner, keeper, store, cfg = _agent(tmp_path, store_opener)
    _run(runner, cfg, 0, 20)
    runner.engine.lead(False)  # a standby on a shared store
    assert keeper.save()
    assert BaselineStore(store).load() == {}
    runner.engine.lead(True)
    assert keeper.save()
    assert set(BaselineStore(store).load()) == {"web"}
    store.close()
