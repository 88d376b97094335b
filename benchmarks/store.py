"""The store's cost on PostgreSQL vs SQLite, and how long a failover takes.

Run (from the repository root, with the machine's PostgreSQL at 127.0.0.1:5432;
about 2 minutes):

    python3 benchmarks/store.py [--checks 1000] [--rounds 30] [--flips 10]
                                [--failovers 20] [--pauses 3] [--pg postgresql://…]

Part 1, store cost (in this process, the agent's own components on a fake clock):
the engine, the runner and the status page's recorder over `--checks` tcp checks
(nothing is probed: results are made here), on a SQLite file and on a fresh
PostgreSQL database in turn. `--rounds` rounds of one result per check; in each
round `--flips` checks change state (half go down, half of the down ones
recover), a steady stream of incidents opening and resolving, each paging one
contact (outbox rows). Once per fake minute the status page's housekeeping runs
(the uptime rollup is written). Every statement and transaction the store runs
is timed; time spent inside `Engine.apply` counts for transitions, the rest for
results. Printed: results, transitions, store time per check result and per
transition (mean, and p50/p99 per transition), and the wall time per result.

Part 2, failover (real processes): two `onwatch run` on one fresh database, one
check, no page. `--failovers` times: `kill -9` the leader, measure until the
other's /healthz says leader (polled every 20 ms), start the killed one again
as the standby. Then `--pauses` times with SIGSTOP instead of kill (the lease
must run out: agent/leader.py LEASE_S). Printed: p50 and max of each.

Every process is stopped at the end; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import structlog  # noqa: E402

from agent.config import Config, load  # noqa: E402
from agent.engine import Engine  # noqa: E402
from agent.metrics import Metrics  # noqa: E402
from agent.pages.apps import StatusService  # noqa: E402
from agent.runner import Runner  # noqa: E402
from agent.store.base import Store  # noqa: E402
from agent.store.pg import PgStore  # noqa: E402
from agent.store.sqlite import SqliteStore  # noqa: E402
from checks.result import CheckResult, ErrorKind  # noqa: E402

START = 1_760_000_000.0


def config_text(state: Path, checks: int, store: str = "", name: str = "a") -> str:
    lines = [f'[agent]\nstate_dir = "{state}"\nlisten = "127.0.0.1:0"\ninstance = "{name}"',
             f'store = "{store}"' if store else "",
             '[[contacts]]\nname = "alice"\nurls = ["json://127.0.0.1:9/alice"]']
    for i in range(checks):
        lines.append(f'[[checks]]\nname = "c{i}"\ntype = "tcp"\nhost = "127.0.0.1"\n'
                     f'port = 9\ninterval = "10s"\ntimeout = "1s"\nconfirm = 1\nrecover = 1\n'
                     f'contacts = ["alice"]')
    return "\n\n".join(lines) + "\n"


class Timer:
    """Accumulates the store's time, in transitions or not."""

    def __init__(self) -> None:
        self.in_transition = False
        self.results_s = 0.0
        self.transition_s = 0.0
        self.current = 0.0

    def add(self, dt: float) -> None:
        if self.in_transition:
            self.current += dt
        else:
            self.results_s += dt


class TimedDb:
    def __init__(self, inner: Any, timer: Timer) -> None:
        self._inner, self._timer = inner, timer

    def _timed(self, name: str, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return getattr(self._inner, name)(*args)
        finally:
            self._timer.add(time.perf_counter() - t0)

    def execute(self, *args: Any) -> Any:
        return self._timed("execute", *args)

    def executemany(self, *args: Any) -> Any:
        return self._timed("executemany", *args)

    def executescript(self, *args: Any) -> Any:
        return self._timed("executescript", *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def instrument(store: Store, timer: Timer) -> None:
    """Time every statement (and, on PostgreSQL, the transactions' BEGIN/COMMIT)."""
    store._db = TimedDb(store._db, timer)  # type: ignore[attr-defined]
    if isinstance(store, PgStore):
        plain = store.tx

        @contextmanager
        def tx() -> Iterator[None]:
            t0 = time.perf_counter()
            cm = plain()
            cm.__enter__()
            timer.add(time.perf_counter() - t0)
            try:
                yield
            except BaseException as exc:
                cm.__exit__(type(exc), exc, exc.__traceback__)
                raise
            t1 = time.perf_counter()
            cm.__exit__(None, None, None)
            timer.add(time.perf_counter() - t1)

        store.tx = tx  # type: ignore[method-assign]


def cost(store: Store, cfg: Config, rounds: int, flips: int) -> dict[str, Any]:
    now = [START]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    timer = Timer()
    metrics = Metrics()
    engine = Engine(cfg, store, metrics, secrets.token_bytes(32), clock)
    runner = Runner(cfg, engine, metrics, clock)
    status = StatusService(cfg, runner, secrets.token_bytes(32), clock)
    instrument(store, timer)
    per_transition: list[float] = []
    plain_apply = engine.apply

    def apply(*args: Any, **kw: Any) -> Any:
        timer.in_transition, timer.current = True, 0.0
        try:
            return plain_apply(*args, **kw)
        finally:
            timer.in_transition = False
            timer.transition_s += timer.current
            per_transition.append(timer.current)

    engine.apply = apply  # type: ignore[method-assign]
    handler = status.wrap(runner.on_result)
    checks, down = cfg.checks, set[int]()
    results = 0
    t0 = time.perf_counter()
    for r in range(rounds):
        now[0] = START + r * 10.0
        recovering = set(list(down)[: flips // 2])
        going = {(r * flips + k) % len(checks) for k in range(flips - len(recovering))} - down
        down = (down - recovering) | going
        for i, check in enumerate(checks):
            ok = i not in down
            handler(check, CheckResult(ok, 0.002, "ok" if ok else "connection refused",
                                       None if ok else ErrorKind.CONNECT, now[0]), 0.0)
            results += 1
        if r % 6 == 5:
            status.site.housekeeping()
    wall = time.perf_counter() - t0
    n = len(per_transition)
    ms = sorted(x * 1000 for x in per_transition)
    return {"results": results, "transitions": n,
            "per_result_us": timer.results_s / results * 1e6,
            "per_transition_ms": timer.transition_s / max(n, 1) * 1000,
            "transition_p50_ms": ms[n // 2] if n else 0.0,
            "transition_p99_ms": ms[min(n - 1, int(n * 0.99))] if n else 0.0,
            "wall_per_result_us": wall / results * 1e6}


def new_database(base: str) -> str:
    name = f"onwatch_bench_{secrets.token_hex(5)}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def drop_database(base: str, url: str) -> None:
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


class Agent:
    def __init__(self, cfg: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(cfg)], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.address: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30) or self.address is None:
            raise RuntimeError(f"agent {cfg} did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if '"agent_started"' in line:
                self.address = json.loads(line)["listen"]
                self._ready.set()

    def role(self) -> str:
        try:
            with urllib.request.urlopen(f"http://{self.address}/healthz", timeout=1) as r:
                return str(json.loads(r.read())["role"])
        except OSError:
            return "unreachable"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGSTOP:
                return
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def failovers(base: str, runs: int, sig: int, tmp: Path) -> list[float]:
    url = new_database(base)
    cfgs = []
    for name in ("a", "b"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
        cfg = tmp / name / "onwatch.toml"
        cfg.write_text(config_text(tmp / name / "state", 1, url, name))
        cfgs.append(cfg)
    agents = [Agent(cfgs[0]), Agent(cfgs[1])]
    times: list[float] = []
    try:
        for _ in range(runs):
            leader = next(i for i, a in enumerate(agents) if a.role() == "leader")
            other = agents[1 - leader]
            t0 = time.monotonic()
            agents[leader].stop(sig if sig == signal.SIGSTOP else signal.SIGKILL)
            while other.role() != "leader" and time.monotonic() - t0 < 30:
                time.sleep(0.02)
            times.append(time.monotonic() - t0)
            if sig == signal.SIGSTOP:
                agents[leader].proc.send_signal(signal.SIGCONT)
                agents[leader].stop()
            agents[leader] = Agent(cfgs[leader])
            deadline = time.monotonic() + 20
            while agents[leader].role() != "standby" and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        for a in agents:
            a.stop()
        drop_database(base, url)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checks", type=int, default=1000, help="checks (default 1000)")
    p.add_argument("--rounds", type=int, default=30, help="results per check (default 30)")
    p.add_argument("--flips", type=int, default=10, help="checks changing state per round")
    p.add_argument("--failovers", type=int, default=20, help="kill -9 failovers (default 20)")
    p.add_argument("--pauses", type=int, default=3, help="SIGSTOP failovers (default 3)")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                   help="the PostgreSQL server's base URL (a database is made per run)")
    args = p.parse_args()
    # The engine logs every incident it opens; the figures are what this prints.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory(prefix="onwatch-store-bench-") as d:
        tmp = Path(d)
        (tmp / "onwatch.toml").write_text(config_text(tmp / "state", args.checks))
        cfg = load(tmp / "onwatch.toml")
        url = new_database(args.pg)
        rows = {}
        try:
            for kind, store in (("sqlite", SqliteStore.open(tmp / "state")),
                                ("postgresql", PgStore.open(url, name="onwatch-bench"))):
                rows[kind] = cost(store, cfg, args.rounds, args.flips)
                store.close()
        finally:
            drop_database(args.pg, url)
        print(f"store cost, {args.checks} checks x {args.rounds} rounds, {args.flips} "
              "state changes a round:")
        print(f"{'store':<11} {'results':>8} {'transitions':>11} {'per result':>11} "
              f"{'per transition':>15} {'p50':>8} {'p99':>8} {'wall/result':>12}")
        for kind, r in rows.items():
            print(f"{kind:<11} {r['results']:>8} {r['transitions']:>11} "
                  f"{r['per_result_us']:>8.1f} us {r['per_transition_ms']:>12.2f} ms "
                  f"{r['transition_p50_ms']:>5.2f} ms {r['transition_p99_ms']:>5.2f} ms "
                  f"{r['wall_per_result_us']:>9.1f} us")
        for label, sig, runs in (("kill -9", signal.SIGKILL, args.failovers),
                                 ("SIGSTOP", signal.SIGSTOP, args.pauses)):
            if runs <= 0:
                continue
            times = failovers(args.pg, runs, sig, tmp / label.replace(" ", ""))
            print(f"failover after {label}, {runs} runs: p50 {statistics.median(times):.2f} s,"
                  f" max {max(times):.2f} s (budget 15 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
