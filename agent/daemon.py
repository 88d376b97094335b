"""`onwatch run`: start everything, serve until SIGTERM/SIGINT, drain, exit 0.

Order matters: the state directory's lock is taken first (one agent per store;
a second one stops naming the PID that holds it), then the store is opened (a
state directory that cannot be written stops the start with its path named),
then state is restored from it (open incidents, and what every baseline had
learned: agent/learning.py), then the web server binds (an address in use
is named), and only then do checks start. On a signal the scheduler stops
starting probes, probes and deliveries in flight get a bounded grace period,
the baselines' learned state is written, and whatever was cut off stays due in
the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web as aiohttp_web

from agent import (
    console,
    leader,
    learning,
    links,
    probe_intake,
    reload,
    service,
    systemd,
    tenancy,
    web,
)
from agent.config import Config
from agent.engine import Engine
from agent.metrics import Metrics
from agent.outbox import Dispatcher
from agent.pages import apps
from agent.pages.apps import StatusService
from agent.probe_intake import ProbeHub
from agent.replies import ReplyHub
from agent.runner import Runner
from agent.scheduler import Scheduler
from agent.steadyclock import SteadyClock
from agent.store.base import Store, StoreError, open_store
from agent.store.lock import LockHeld, StateLock
from agent.storm import StormPolicy
from checks.base import ProbeContext

log = structlog.get_logger(__name__)

DRAIN_GRACE = 3.0
#: How often the agent compares its clock with the wall clock (to log a step).
CLOCK_LOOK_S = 10.0


class StartError(Exception):
    """The agent cannot start; the message says what and what to do."""


async def serve(config: Config, *, stop: asyncio.Event | None = None,
                reload_from: Path | None = None) -> None:
    """Run the agent; first of all take the state directory's lock (agent/store/lock.py)."""
    try:
        lock = StateLock.acquire(config.agent.state_dir)
    except LockHeld as exc:
        raise StartError(str(exc)) from None
    except OSError as exc:
        raise StartError(f"state directory {config.agent.state_dir} cannot be used: "
                         f"{exc.strerror or exc}; set [agent] state_dir to a writable "
                         "directory") from None
    try:
        await _serve(config, stop or asyncio.Event(), reload_from)
    finally:
        lock.release()


async def _serve(config: Config, stop: asyncio.Event, reload_from: Path | None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store, link_key, api_token = _open_state(config)
    metrics = Metrics(settings=config.agent.service)
    # Every timer waits on elapsed time: a wall-clock step neither fires nor stalls them.
    clock = SteadyClock()
    engine = Engine(config, store, metrics, link_key, clock)
    leadership = await leader.start(config, store, engine, metrics)  # PostgreSQL only
    runner = Runner(config, engine, metrics, clock)
    engine.after_takeover = runner.catch_up
    runner.restore()
    keeper = learning.Keeper(runner, store, metrics.store_errors.inc)
    keeper.restore()  # before the first result, which would start learning afresh
    ctx = ProbeContext(clock)
    status = StatusService(config, runner, link_key, clock)
    desk = console.build(runner, status.site)
    probes = ProbeHub(config, runner, link_key, metrics.registry, clock)
    app = web.build_app(runner, api_token, ctx)
    apps.add_private(app, status.site)
    console.mount(app, desk)
    probe_intake.mount(app, probes)
    site, address = await _listen(config, app, store)
    public, public_address = await _public(config, runner, ctx, status, site, store,
                                           (desk, probes))
    engine.public_url = config.agent.public_url or f"http://{public_address or address}"
    status.public_url = engine.public_url
    # Where `onwatch ack|resolve|note|declare` find this agent (listen may say port 0).
    (config.agent.state_dir / "agent.addr").write_text(address + "\n")
    # Checks that only remote probes run are not run here (agent/config_probe.py).
    scheduler = Scheduler([c for c in config.checks if c.runs_here], ctx,
                          console.wrap(desk, status.wrap(runner.on_result)),
                          max_concurrency=config.agent.max_concurrency, clock=clock)
    replies = ReplyHub(config.replies, link_key, time.time, engine=engine,
                       registry=metrics.registry)
    dispatcher = _dispatcher(config, store, metrics, engine, clock, replies)
    # Pages the store cannot take go out from memory (agent/pending.py).
    dispatcher.pending, engine.deliver_unstored = engine.pending, dispatcher.deliver_unstored
    dispatcher.start()
    status.start()
    replies.start()
    engine_task = asyncio.create_task(engine.run(), name="engine")
    scheduler.start()
    await asyncio.sleep(0)  # the first pass: every check task has its first due time
    side_tasks = service.start_tasks(config, scheduler, store, metrics.registry)
    if leadership is not None:
        dispatcher.on_fenced = leadership.fenced
        side_tasks.append(asyncio.create_task(leadership.run(), name="leadership"))
    side_tasks.append(asyncio.create_task(_clock_watch(clock), name="clock-watch"))
    side_tasks.append(asyncio.create_task(keeper.run(), name="baseline-keeper"))
    side_tasks.append(asyncio.create_task(probes.run(), name="probe-watch"))
    reloader = reload.Reloader(config, reload_from, metrics.registry,
                               reload.applier(engine, runner, dispatcher, scheduler, probes))
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    log.info("agent_started", listen=address, public_listen=public_address,
             store=config.agent.store_shown, instance=config.agent.instance,
             role="leader" if engine.leading else "standby",
             checks=len(config.checks),
             contacts=len(config.contacts), state_dir=str(config.agent.state_dir),
             config=str(config.source))
    service.ready(scheduler, store)
    # What exists now (modules, the config, every check's state) lives as long as the
    # process: freezing it keeps full collections from walking it over and over, which
    # on 500 checks was a 40-110 ms pause of the loop under page load (check lateness).
    gc.freeze()
    try:
        await stop.wait()
    finally:
        await _drain(_Running(app, side_tasks, scheduler, engine, engine_task, dispatcher,
                              status, replies, ctx, public, site, store, keeper))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("agent_stopped")


async def _listen(config: Config, app: aiohttp_web.Application, store: Store
                  ) -> tuple[aiohttp_web.AppRunner, str]:
    try:
        return await web.start(app, config.agent.listen_host, config.agent.listen_port)
    except OSError as exc:
        store.close()
        raise StartError(f"cannot listen on {config.agent.listen_host}:{config.agent.listen_port}:"
                         f" {exc.strerror or exc}; change [agent] listen") from None


@dataclass(frozen=True, slots=True)
class _Running:
    """What a running agent has started, in the order it started it."""

    app: aiohttp_web.Application
    side_tasks: list[asyncio.Task[None]]
    scheduler: Scheduler
    engine: Engine
    engine_task: asyncio.Task[None]
    dispatcher: Dispatcher
    status: StatusService
    replies: ReplyHub
    ctx: ProbeContext
    public: aiohttp_web.AppRunner | None
    site: aiohttp_web.AppRunner
    store: Store
    keeper: learning.Keeper


async def _drain(r: _Running) -> None:
    """Stop starting work, give what is in flight a bounded grace, close everything."""
    log.info("agent_stopping")
    systemd.notify("STOPPING=1")
    r.app[web.STOPPING_KEY][0] = True
    for task in r.side_tasks:
        task.cancel()
    await asyncio.gather(*r.side_tasks, return_exceptions=True)
    await r.scheduler.stop(DRAIN_GRACE)
    r.keeper.save()  # after the last result: what a clean restart continues from
    r.engine.stop()
    await asyncio.wait({r.engine_task}, timeout=1.0)
    await r.dispatcher.stop(DRAIN_GRACE)
    await r.status.stop(DRAIN_GRACE)
    await r.replies.stop()
    await r.ctx.close()
    if r.public is not None:
        await r.public.cleanup()
    await r.site.cleanup()
    r.store.close()

def _open_state(config: Config) -> tuple[Store, bytes, str]:
    """The store, the link-signing key and the API token, or a StartError naming why not."""
    try:
        store = open_store(config)
    except StoreError as exc:
        raise StartError(str(exc)) from None
    try:
        # Instances sharing a store sign links alike: a standby honours the leader's.
        link_key = store.shared_secret("link.key",
                                       links.load_or_create_key(config.agent.state_dir))
        api_token = config.agent.api_token or links.load_or_create_token(config.agent.state_dir)
    except store.errors as exc:
        store.close()
        raise StartError(f"cannot read the shared link key from {store.path}: {exc}") from None
    except OSError as exc:
        store.close()
        raise StartError(f"cannot keep secrets in {config.agent.state_dir}: "
                         f"{exc.strerror or exc}") from None
    return store, link_key, api_token


def _dispatcher(config: Config, store: Store, metrics: Metrics, engine: Engine,
                clock: SteadyClock, replies: ReplyHub) -> Dispatcher:
    d = config.delivery
    storm = StormPolicy(d.storm_threshold, d.storm_window, d.storm_interval)
    # A client's people bundle by their client's storm settings (the rest: the provider's).
    per_tenant = {name: storm.but(t.storm) for name, t in config.tenants.items()}
    return Dispatcher(store, config.contacts, metrics, engine.outbox_wakeup, clock,
                      policy=d, on_unreachable=engine.unreachable, storm=storm,
                      storm_for=lambda contact: per_tenant.get(
                          tenancy.of_name(config, contact), storm),
                      replies=replies)


async def _public(config: Config, runner: Runner, ctx: ProbeContext, status: StatusService,
                  private: aiohttp_web.AppRunner, store: Store,
                  parts: tuple[console.Console, ProbeHub]
                  ) -> tuple[aiohttp_web.AppRunner | None, str | None]:
    """The public listener, when `[web] public_listen` asks for one (see agent/pages/apps.py)."""
    if config.web.public_listen is None:
        return None, None
    host, port = config.web.public_listen
    try:
        public, address = await web.start(apps.public_app(runner, ctx, status.site, *parts),
                                           host, port)
    except OSError as exc:
        await private.cleanup()
        store.close()
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; change "
                         "[web] public_listen") from None
    # Where tests and scripts find the public listener (public_listen may say port 0).
    (config.agent.state_dir / "public.addr").write_text(address + "\n")
    return public, address


async def _clock_watch(clock: SteadyClock) -> None:
    """Look for wall-clock steps now and then, so that a step is logged when it happens."""
    while True:
        clock.check_step()
        await asyncio.sleep(CLOCK_LOOK_S)
