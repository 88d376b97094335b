"""Runs every check on its interval: one timer over a heap of due times, a task only
for a probe in flight, a global concurrency cap, and the probe deadline enforced
here (the only deadline owner).

Phase: each check fires at `offset + k * interval`, where the offset is a
stable hash of its name (as Prometheus spreads its scrapes), so a thousand
checks with one interval do not fire in lockstep, and the spread survives a
restart. After a failure the result handler may ask for a quick re-check;
the check then runs again `recheck_interval` after the previous run ended,
and returns to its phase once the handler is satisfied.

Why a heap and not a task per check: an idle check then costs one small
entry (no coroutine frame, no task, no timer handle), and the loop holds a
single timer, armed for the earliest due time; 10,000 checks cost what 10
do while they wait. A probe that is due becomes a task; a hanging target
holds only that task (and one slot of the cap, for at most its timeout):
the other checks keep their schedule. Lateness (start minus due time) is
handed to the result handler for the lateness metric.

The first runs after start come soon (a fresh agent should know every
check's state quickly) but not all at once: they are spread, in phase
order, over `first_spread(n)` = min(interval, max(5 s, n / 200 s)), so
10,000 checks start at 200 a second instead of 2,000.
"""

from __future__ import annotations

import asyncio
import heapq
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
#: First runs start at most this many a second (see the module docstring).
FIRST_RUNS_PER_S = 200.0
#: A timer may fire this early (uvloop's clock has 1 ms steps): what is due within
#: it runs now rather than re-arming a timer for a fraction of a millisecond.
EARLY_S = 0.002


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


def first_spread(n_checks: int) -> float:
    """Seconds over which the first runs of `n_checks` checks are spread (before the
    interval caps it, see first_due)."""
    return max(5.0, n_checks / FIRST_RUNS_PER_S)


def first_due(start: float, interval: float, offset: float, spread: float) -> float:
    """The first run: in phase order over min(interval, spread) after `start`."""
    return start + (offset / interval) * min(interval, spread)


class _Entry:
    """One scheduled check: what the heap points at. `gen` changes when the check is
    replaced or removed, so that a stale heap item or a finishing probe is ignored."""

    __slots__ = ("check", "gen", "offset", "task")

    def __init__(self, check: CheckConfig, gen: int) -> None:
        self.check = check
        self.offset = phase_offset(check.name, check.interval)
        self.gen = gen
        self.task: asyncio.Task[None] | None = None  # its probe in flight


class Scheduler:
    def __init__(self, checks: Sequence[CheckConfig], ctx: ProbeContext, on_result: ResultHandler,
                 *, max_concurrency: int, clock: Callable[[], float] = time.time) -> None:
        self._checks = checks
        #: Stamps results (`checked_at`); the schedule itself runs on the loop's clock.
        self._clock = clock
        self._ctx = ctx
        self._on_result = on_result
        self._sem = asyncio.Semaphore(max_concurrency)
        self._entries: dict[str, _Entry] = {}
        #: (due, generation, name): the entry is current while its gen matches.
        self._heap: list[tuple[float, int, str]] = []
        self._gen = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: Probes in flight, the only tasks this scheduler holds.
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._lost = 0  # runs ended by a bug outside the handler (see healthy)

    def check_count(self) -> int:
        return len(self._checks)

    def running_count(self) -> int:
        """Probes in flight (each one task); an idle check has none."""
        return len(self._running)

    def healthy(self) -> bool:
        """Not stopping, no run lost to a bug, and the timer armed while checks wait."""
        return (not self._stopping and self._lost == 0
                and (self._timer is not None or not self._heap))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        now, spread = loop.time(), first_spread(len(self._checks))
        for check in self._checks:
            self._add(check, now, spread)
        heapq.heapify(self._heap)
        self._arm()

    def _add(self, check: CheckConfig, now: float, spread: float, *, push: bool = False) -> None:
        self._gen += 1
        entry = self._entries[check.name] = _Entry(check, self._gen)
        item = (first_due(now, check.interval, entry.offset, spread), entry.gen, check.name)
        if push:
            heapq.heappush(self._heap, item)
        else:
            self._heap.append(item)  # start() heapifies once: O(n), not O(n log n)

    def update(self, checks: Sequence[CheckConfig], restart: set[str]) -> None:
        """A reloaded config: removed checks stop, added ones start, those named in
        `restart` (changed) start over with their new settings; the others go on untouched."""
        names = {c.name for c in checks}
        for name in [n for n in self._entries if n not in names or n in restart]:
            entry = self._entries.pop(name)
            if entry.task is not None:
                entry.task.cancel()  # a probe in flight of a removed check has nobody to tell
        self._checks = checks
        now = asyncio.get_running_loop().time()
        added = [c for c in checks if c.name not in self._entries]
        spread = first_spread(len(added))
        for check in added:
            self._add(check, now, spread, push=True)
        self._arm()

    async def stop(self, grace: float) -> None:
        """Start nothing new; let probes in flight finish for up to `grace` seconds."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()  # a waiting check has nothing to finish
            self._timer = None
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _arm(self) -> None:
        """One timer, for the earliest due time (stale heap items are dropped first)."""
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)
        if self._stopping or not heap:
            return
        at = heap[0][0]
        if self._timer is not None:
            if at >= self._timer_at:
                return  # the armed timer comes first; it re-arms when it fires
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._fire)

    def _stale(self, item: tuple[float, int, str]) -> bool:
        entry = self._entries.get(item[2])
        return entry is None or entry.gen != item[1]

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        loop = asyncio.get_running_loop()
        horizon = loop.time() + EARLY_S
        heap = self._heap
        while heap and heap[0][0] <= horizon and not self._stopping:
            due, gen, name = heapq.heappop(heap)
            entry = self._entries.get(name)
            if entry is None or entry.gen != gen or entry.task is not None:
                continue
            task = entry.task = loop.create_task(self._run(entry, due), name=f"check:{name}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self._arm()

    async def _run(self, entry: _Entry, due: float) -> None:
        check = entry.check
        loop = asyncio.get_running_loop()
        recheck = False
        try:
            async with self._sem:
                lateness = max(0.0, loop.time() - due)
                result = await run_with_deadline(KINDS[check.type].probe, check.spec, self._ctx,
                                                 check.timeout, clock=self._clock)
            try:
                recheck = self._on_result(check, result, lateness)
            except Exception:  # a bug in the handler must not stop this check forever
                log.exception("result_handler_failed", check=check.name)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug around the probe: keep the check scheduled, say so
            self._lost += 1
            log.exception("scheduler_run_failed", check=check.name)
        finally:
            entry.task = None
        if self._stopping or self._entries.get(check.name) is not entry:
            return  # stopping, or removed/replaced by a reload while in flight
        heapq.heappush(self._heap, (next_due(loop.time(), due, check, entry.offset, recheck),
                                    entry.gen, check.name))
        self._arm()
