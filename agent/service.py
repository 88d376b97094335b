"""What the agent tells its supervisor: READY, STATUS, the watchdog, its own health.

The daemon calls `ready()` once the config is loaded, the store opened
and the scheduler has made its first pass (every check has its first due
time); systemd's `Type=notify` start completes only then. `supervise()`
runs for the agent's life: every few seconds it pings systemd's watchdog
(when one was asked for) and refreshes `STATUS=` ("watching 5 checks, 1
open incident"), so `systemctl status onwatch` says what the agent is
doing. A wedged event loop stops the pings and systemd restarts the agent,
which rebuilds every timer from its store.

`healthy()` is the one definition of "the agent works" that outside
watchers are told about (the dead-man heartbeat): every check's scheduling
task alive, and the store answering a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable

import structlog

from agent import systemd
from agent.scheduler import Scheduler
from agent.store.sqlite import Store

log = structlog.get_logger(__name__)

#: How often STATUS= is refreshed when systemd asked for no watchdog.
STATUS_EVERY = 15.0


def status_line(checks: int, open_incidents: int) -> str:
    s = "" if checks == 1 else "s"
    i = "" if open_incidents == 1 else "s"
    return f"watching {checks} check{s}, {open_incidents} open incident{i}"


def status(scheduler: Scheduler, store: Store) -> str:
    try:
        open_now = len(store.open_incidents())
    except sqlite3.Error:
        return f"watching {scheduler.check_count()} checks; the store does not answer"
    return status_line(scheduler.check_count(), open_now)


def ready(scheduler: Scheduler, store: Store) -> None:
    systemd.notify(f"READY=1\nSTATUS={status(scheduler, store)}")


def store_problem(store: Store) -> str | None:
    """None when the store takes a write, else why not (disk full, file gone, locked)."""
    try:
        store.touch()
    except sqlite3.Error as exc:
        return str(exc)
    return None


def healthy(scheduler: Scheduler, store: Store) -> bool:
    return scheduler.healthy() and store_problem(store) is None


async def supervise(describe: Callable[[], str]) -> None:
    """Ping the watchdog and refresh STATUS= until cancelled."""
    interval = systemd.watchdog_interval()
    every = STATUS_EVERY if interval is None else min(interval, STATUS_EVERY)
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            # A loop that is alive enough to run this is alive enough to page.
            message = f"STATUS={describe()}"
            if interval is not None:
                message = "WATCHDOG=1\n" + message
            systemd.notify(message)
            await asyncio.sleep(every)
