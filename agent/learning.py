"""Baselines survive restarts: learned state written to the store, read back at start.

A baseline needs a day of a check's runs before it scores anything, and the
error-rate baseline a day before it judges; a restart that forgot them would
leave every check unwatched for slow-downs for that day after each upgrade.
`Keeper` keeps them in the store (agent/store/baselines.py):

- `restore()`, at start, after the runner rebuilt outage state and before
  the first result: every configured check that learns a baseline gets its
  stored state back (`baseline_state_restored`, with the samples each signal
  had learned from). A state that cannot be used is discarded, with
  `baseline_state_discarded` naming the check and why: it does not parse, it
  is of another format or was learned with other parameters (another
  onwatch version; agent/detect/learned.py), or the check's settings that
  shape what is learned changed since: its type, its target or its interval.
  A discarded check learns again from its first run, as a new one does.
- `run()`: every SAVE_EVERY_S, every check's learned state is written, in
  chunks of CHUNK checks with the event loop free in between (10,000 checks
  are 30 MB of JSON). `save()` at shutdown (the daemon's drain, after the
  last probe finished) writes everything once more, so that a clean restart
  loses nothing and a crash (`kill -9`, power) at most SAVE_EVERY_S.
- A write the store refuses (a full disk, a locked file) is logged once
  (`baseline_state_write_failed`; `..._recovered` when writes work again),
  counted in `onwatch_store_errors_total`, and tried again at the next
  period: the state is in memory, nothing else waits for it, nothing stops.
- Several instances on one PostgreSQL store (agent/leader.py) all restore at
  start and learn from their own probes; only the leader writes, so that the
  stored state is one instance's and two writers never replace each other's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from agent.config import CheckConfig
from agent.detect import learned
from agent.detect.pipeline import CheckState, Params
from agent.detect.snapshot import SnapshotError
from agent.fields import format_duration
from agent.runner import Runner, params_for
from agent.store.base import Store
from agent.store.baselines import MAX_BYTES, BaselineStore, Row
from checks.registry import KINDS

log = structlog.get_logger(__name__)

SAVE_EVERY_S = 300.0
#: Checks written per transaction by the periodic save, the loop free in between.
CHUNK = 200


def spec_of(check: CheckConfig) -> dict[str, Any]:
    """The settings a learned state depends on: a state learned under others is discarded."""
    return {"type": check.type, "target": KINDS[check.type].target(check.spec),
            "interval": check.interval}


def why_unusable(stored: object, now: dict[str, Any]) -> str | None:
    """Why a state stored under `stored` settings cannot serve a check with `now`'s."""
    if not isinstance(stored, dict):
        return "its check settings were not stored"
    for key in ("type", "target", "interval"):
        was, new = stored.get(key), now[key]
        if was != new:
            if key == "interval" and isinstance(was, (int, float)):
                was, new = format_duration(was), format_duration(new)
            return f"the check's {key} changed from {was} to {new}"
    return None


class Keeper:
    def __init__(self, runner: Runner, store: Store,
                 on_failure: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.runner = runner
        self.store = store
        self.table = BaselineStore(store)
        self._on_failure = on_failure
        self._clock = clock
        #: Why writes fail now (None: they work), so that a failure is logged once.
        self.problem: str | None = None
        self._too_large: set[str] = set()

    def restore(self) -> None:
        """Give every configured check its stored state back, or say why not."""
        try:
            rows = self.table.load()
        except self.store.errors as exc:
            log.error("baseline_state_unreadable", error=str(exc),
                      note="every baseline learns again from its first run")
            return
        now = self._clock()
        for check in self.runner.config.checks:
            row = rows.get(check.name)
            st = self.runner.state(check.name)
            if row is None or st is None:
                continue
            params = params_for(check)
            if not learned.signals(params):
                continue  # learns nothing now: the row goes with the next write
            why = self._load(check, row, st, params)
            if why is not None:
                log.warning("baseline_state_discarded", check=check.name, why=why,
                            note="this check's baselines learn again from its first run")
                self._discard(check.name)
                continue
            log.info("baseline_state_restored", check=check.name,
                     samples=learned.samples(st), age_s=round(now - row.saved_at, 1))

    def _load(self, check: CheckConfig, row: Row, st: CheckState, params: Params
              ) -> str | None:
        try:
            spec, data = json.loads(row.spec), json.loads(row.state)
        except ValueError as exc:
            return f"the stored state does not parse: {exc}"
        why = why_unusable(spec, spec_of(check))
        if why is not None:
            return why
        fresh = CheckState()
        try:
            dropped = learned.load(fresh, data, params)
        except SnapshotError as exc:
            return f"the stored state cannot be used by this version: {exc}"
        st.baselines, st.errors, st.degraded_now = fresh.baselines, fresh.errors, fresh.degraded_now
        if dropped:
            log.info("baseline_state_signals_dropped", check=check.name, signals=dropped,
                     why="no longer learned by this check")
        return None

    def _discard(self, name: str) -> None:
        # If this fails, the next write replaces or drops the row (and logs its failure).
        with contextlib.suppress(*self.store.errors):
            self.table.discard(name)

    def save(self) -> bool:
        """Write every check's learned state now; False when the store refused it."""
        checks = self.runner.config.checks
        return self._write(self._rows(checks), keep={c.name for c in checks})

    async def run(self) -> None:
        """Write every SAVE_EVERY_S, in chunks, for the agent's life."""
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            checks = self.runner.config.checks
            for i in range(0, max(len(checks), 1), CHUNK):
                last = i + CHUNK >= len(checks)
                # Rows of removed checks are dropped with the last chunk.
                self._write(self._rows(checks[i:i + CHUNK]),
                            keep={c.name for c in checks} if last else None)
                await asyncio.sleep(0)

    def _rows(self, checks: Sequence[CheckConfig]) -> list[Row]:
        now, rows = self._clock(), []
        for check in checks:
            st = self.runner.state(check.name)
            data = learned.save(st) if st is not None else None
            if data is None:
                continue
            text = json.dumps(data)
            if len(text) > MAX_BYTES:
                if check.name not in self._too_large:
                    self._too_large.add(check.name)
                    log.warning("baseline_state_too_large", check=check.name, size=len(text),
                                limit=MAX_BYTES, note="not stored: a restart learns it again")
                continue
            rows.append(Row(check.name, json.dumps(spec_of(check)), text, now))
        return rows

    def _write(self, rows: list[Row], keep: set[str] | None) -> bool:
        if not self.runner.engine.leading:
            # Instances sharing a PostgreSQL store all probe and learn, but the stored
            # state is the leader's alone: two writers would replace each other's rows.
            return True
        try:
            self.table.save(rows, keep)
        except self.store.errors as exc:
            self._on_failure()
            if self.problem is None:
                log.error("baseline_state_write_failed", error=str(exc), checks=len(rows),
                          note=f"kept in memory, written again in {SAVE_EVERY_S:.0f} s")
            self.problem = str(exc)
            return False
        if self.problem is not None:
            log.warning("baseline_state_write_recovered", checks=len(rows))
            self.problem = None
        return True
