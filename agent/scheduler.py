"""Runs every check on its interval: one task per check, a global concurrency cap,
and the probe deadline enforced here (the only deadline owner).

Phase: each check fires at `offset + k * interval`, where the offset is a
stable hash of its name (as Prometheus spreads its scrapes), so a thousand
checks with one interval do not fire in lockstep, and the spread survives a
restart. After a failure the result handler may ask for a quick re-check;
the check then runs again `recheck_interval` after the previous run ended,
and returns to its phase once the handler is satisfied.

A hanging target holds only its own task (and one slot of the cap, for at
most its timeout): the other checks keep their schedule. Lateness (start
minus due time) is handed to the result handler for the lateness metric.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import Callable, Sequence

import structlog

from agent.config import CheckConfig
from checks.base import ProbeContext, run_with_deadline
from checks.registry import KINDS
from checks.result import CheckResult

log = structlog.get_logger(__name__)

#: (check, result, lateness seconds) -> True to re-check quickly.
ResultHandler = Callable[[CheckConfig, CheckResult, float], bool]


def phase_offset(name: str, interval: float) -> float:
    return (zlib.crc32(name.encode()) / 2**32) * interval


def next_slot(now: float, interval: float, offset: float) -> float:
    """The first time strictly after `now` of the form offset + k * interval."""
    k = math.floor((now - offset) / interval) + 1
    return offset + k * interval


def next_due(now: float, due: float, check: CheckConfig, offset: float, recheck: bool
             ) -> float:
    """When a check runs next, after a run that was due at `due` and ended at `now`."""
    if recheck:
        return now + check.recheck_interval
    # max(now, due): event-loop timers may fire a little early (uvloop does, by a few
    # ms), and a probe that finishes before its due time must not get that slot again.
    return next_slot(max(now, due), check.interval, offset)


class Scheduler:
    def __init__(self, checks: Sequence[CheckConfig], ctx: ProbeContext, on_result: ResultHandler,
                 *, max_concurrency: int, clock: Callable[[], float] = time.time) -> None:
        self._checks = checks
        #: Stamps results (`checked_at`); the schedule itself runs on the loop's clock.
        self._clock = clock
        self._ctx = ctx
        self._on_result = on_result
        self._sem = asyncio.Semaphore(max_concurrency)
        #: One task per check, by name: a reload replaces single entries.
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._sleeping: set[asyncio.Task[None] | None] = set()

    def check_count(self) -> int:
        return len(self._checks)

    def healthy(self) -> bool:
        """Every check's task is alive (none ended by a bug), and not stopping."""
        return not self._stopping and all(not t.done() for t in self._tasks.values())

    def start(self) -> None:
        for check in self._checks:
            self._start(check)

    def _start(self, check: CheckConfig) -> None:
        self._tasks[check.name] = asyncio.create_task(self._loop(check),
                                                      name=f"check:{check.name}")

    def update(self, checks: Sequence[CheckConfig], restart: set[str]) -> None:
        """A reloaded config: removed checks stop, added ones start, those named in
        `restart` (changed) start over with their new settings; the others go on untouched."""
        names = {c.name for c in checks}
        for name in [n for n in self._tasks if n not in names or n in restart]:
            task = self._tasks.pop(name)
            self._sleeping.discard(task)
            task.cancel()  # a probe in flight of a removed check has nobody to tell
        self._checks = checks
        for check in checks:
            if check.name not in self._tasks:
                self._start(check)

    async def stop(self, grace: float) -> None:
        """Start nothing new; let probes in flight finish for up to `grace` seconds."""
        self._stopping = True
        for task in self._sleeping:
            if task is not None:
                task.cancel()  # a sleeping check has nothing to finish
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks.values(), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self, check: CheckConfig) -> None:
        loop = asyncio.get_running_loop()
        kind = KINDS[check.type]
        offset = phase_offset(check.name, check.interval)
        # The first run comes soon after start (spread over at most 5 s, in phase
        # order) so that a fresh agent knows every check's state quickly.
        due = loop.time() + (offset / check.interval) * min(check.interval, 5.0)
        task = asyncio.current_task()
        while not self._stopping:
            delay = due - loop.time()
            if delay > 0:
                self._sleeping.add(task)
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    if self._stopping:
                        return
                    raise
                finally:
                    self._sleeping.discard(task)
            async with self._sem:
                lateness = max(0.0, loop.time() - due)
                result = await run_with_deadline(kind.probe, check.spec, self._ctx, check.timeout,
                                                clock=self._clock)
            try:
                recheck = self._on_result(check, result, lateness)
            except Exception:  # a bug in the handler must not stop this check forever
                log.exception("result_handler_failed", check=check.name)
                recheck = False
            due = next_due(loop.time(), due, check, offset, recheck)
