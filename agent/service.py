"""What the agent tells its supervisor: READY, STATUS, the watchdog, its own health.

The daemon calls `ready()` once the config is loaded, the store opened
and the scheduler has made its first pass (every check has its first due
time); systemd's `Type=notify` start completes only then. `supervise()`
runs for the agent's life: every few seconds it pings systemd's watchdog
(when one was asked for) and refreshes `STATUS=` ("watching 5 checks, 1
open incident"), so `systemctl status onwatch` says what the agent is
doing. A wedged event loop stops the pings and systemd restarts the agent,
which rebuilds every timer from its store.

`health_problem()` is the one definition of "the agent works" that outside
watchers are told about: every check's scheduling task alive, and the
store answering a write. `heartbeat()` pings `[agent] heartbeat_url` (a
Healthchecks check, an Uptime Kuma push monitor, a cron monitor) every
`heartbeat_interval` while, and only while, the agent is healthy: when
onwatch dies, wedges, loses its store or its server loses power, the pings
stop and that service tells someone. Failures are logged once per change,
not on every interval, and counted in `onwatch_heartbeat_pings_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter

from agent import systemd
from agent.config import Config
from agent.scheduler import Scheduler
from agent.store import upkeep
from agent.store.base import Store

log = structlog.get_logger(__name__)

#: How often STATUS= is refreshed when systemd asked for no watchdog.
STATUS_EVERY = 15.0


def start_tasks(config: Config, scheduler: Scheduler, store: Store,
                registry: CollectorRegistry) -> list[asyncio.Task[None]]:
    """The agent's own loops beside the checks: supervision, store upkeep, the heartbeat."""
    tasks = [
        asyncio.create_task(supervise(lambda: status(scheduler, store)), name="watchdog"),
        asyncio.create_task(upkeep.run(store, config.agent.service.retention, time.time),
                            name="store-upkeep"),
    ]
    beat = config.agent.service
    if beat.heartbeat_url:
        tasks.append(asyncio.create_task(
            heartbeat(beat.heartbeat_url, beat.heartbeat_interval,
                      lambda: health_problem(scheduler, store), registry), name="heartbeat"))
    return tasks


def status_line(checks: int, open_incidents: int) -> str:
    s = "" if checks == 1 else "s"
    i = "" if open_incidents == 1 else "s"
    return f"watching {checks} check{s}, {open_incidents} open incident{i}"


def status(scheduler: Scheduler, store: Store) -> str:
    try:
        open_now = len(store.open_incidents())
    except store.errors:
        return f"watching {scheduler.check_count()} checks; the store does not answer"
    return status_line(scheduler.check_count(), open_now)


def ready(scheduler: Scheduler, store: Store) -> None:
    systemd.notify(f"READY=1\nSTATUS={status(scheduler, store)}")


def store_problem(store: Store) -> str | None:
    """None when the store takes a write, else why not (disk full, file gone, locked)."""
    try:
        store.touch()
    except store.errors as exc:
        return str(exc)
    return None


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


async def heartbeat(url: str, interval: float, is_healthy: Callable[[], str | None],
                    registry: CollectorRegistry) -> None:
    """Ping `url` every `interval` while `is_healthy()` says None (no problem), until cancelled."""
    pings = Counter("onwatch_heartbeat_pings_total", "Dead-man heartbeat pings by result "
                    "(ok, failed, withheld: the agent was not healthy)", ["result"],
                    registry=registry)
    last = "ok"
    timeout = aiohttp.ClientTimeout(total=min(10.0, interval / 2))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            problem = is_healthy()
            if problem is not None:
                result, detail = "withheld", problem
            else:
                result, detail = await _ping(session, url)
            pings.labels(result).inc()
            if result != last:
                event = "heartbeat_ok" if result == "ok" else f"heartbeat_{result}"
                (log.info if result == "ok" else log.warning)(event, detail=detail)
                last = result
            await asyncio.sleep(interval)


async def _ping(session: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    try:
        async with session.get(url) as resp:
            await resp.read()
            if resp.status >= 400:
                return "failed", f"the heartbeat service answered {resp.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # The URL is a secret (its token): never in the log, only what went wrong.
        return "failed", f"{type(exc).__name__}: cannot reach the heartbeat service"
    return "ok", ""


def health_problem(scheduler: Scheduler, store: Store) -> str | None:
    """None when healthy, else what is wrong (for the log)."""
    if not scheduler.healthy():
        return "the scheduler is not running every check"
    problem = store_problem(store)
    return None if problem is None else f"the store cannot be written: {problem}"
