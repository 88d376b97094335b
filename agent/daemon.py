"""`onwatch run`: start everything, serve until SIGTERM/SIGINT, drain, exit 0.

Order matters: the store is opened first (a state directory that cannot be
written stops the start with its path named), then state is restored from
it, then the web server binds (an address in use is named), and only then
do checks start. On a signal the scheduler stops starting probes, probes and
deliveries in flight get a bounded grace period, and whatever was cut off
stays due in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import structlog

from agent import links, reload, service, systemd, web
from agent.config import Config
from agent.engine import Engine
from agent.metrics import Metrics
from agent.outbox import Dispatcher
from agent.runner import Runner
from agent.scheduler import Scheduler
from agent.store.sqlite import Store, StoreError
from agent.storm import StormPolicy
from checks.base import ProbeContext

log = structlog.get_logger(__name__)

DRAIN_GRACE = 3.0


class StartError(Exception):
    """The agent cannot start; the message says what and what to do."""


async def serve(config: Config, *, stop: asyncio.Event | None = None,
                reload_from: Path | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store, link_key, api_token = _open_state(config)
    metrics = Metrics()
    engine = Engine(config, store, metrics, link_key, time.time)
    runner = Runner(config, engine, metrics, time.time)
    runner.restore()
    ctx = ProbeContext()
    app = web.build_app(runner, api_token, ctx)
    try:
        site, address = await web.start(app, config.agent.listen_host, config.agent.listen_port)
    except OSError as exc:
        store.close()
        raise StartError(f"cannot listen on {config.agent.listen_host}:{config.agent.listen_port}:"
                         f" {exc.strerror or exc}; change [agent] listen") from None
    engine.public_url = config.agent.public_url or f"http://{address}"
    # Where `onwatch ack|resolve|note|declare` find this agent (listen may say port 0).
    (config.agent.state_dir / "agent.addr").write_text(address + "\n")
    scheduler = Scheduler(config.checks, ctx, runner.on_result,
                          max_concurrency=config.agent.max_concurrency)
    dispatcher = _dispatcher(config, store, metrics, engine)
    dispatcher.start()
    engine_task = asyncio.create_task(engine.run(), name="engine")
    scheduler.start()
    await asyncio.sleep(0)  # the first pass: every check task has its first due time
    side_tasks = service.start_tasks(config, scheduler, store, metrics.registry)
    reloader = reload.Reloader(config, reload_from, metrics.registry,
                               reload.applier(engine, runner, dispatcher, scheduler))
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    log.info("agent_started", listen=address, checks=len(config.checks),
             contacts=len(config.contacts), state_dir=str(config.agent.state_dir),
             config=str(config.source))
    service.ready(scheduler, store)
    try:
        await stop.wait()
    finally:
        log.info("agent_stopping")
        systemd.notify("STOPPING=1")
        app[web.STOPPING_KEY][0] = True
        for task in side_tasks:
            task.cancel()
        await asyncio.gather(*side_tasks, return_exceptions=True)
        await scheduler.stop(DRAIN_GRACE)
        engine.stop()
        await asyncio.wait({engine_task}, timeout=1.0)
        await dispatcher.stop(DRAIN_GRACE)
        await ctx.close()
        await site.cleanup()
        store.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("agent_stopped")


def _open_state(config: Config) -> tuple[Store, bytes, str]:
    """The store, the link-signing key and the API token, or a StartError naming why not."""
    try:
        store = Store.open(config.agent.state_dir)
    except StoreError as exc:
        raise StartError(str(exc)) from None
    try:
        link_key = links.load_or_create_key(config.agent.state_dir)
        api_token = config.agent.api_token or links.load_or_create_token(config.agent.state_dir)
    except OSError as exc:
        store.close()
        raise StartError(f"cannot keep secrets in {config.agent.state_dir}: "
                         f"{exc.strerror or exc}") from None
    return store, link_key, api_token


def _dispatcher(config: Config, store: Store, metrics: Metrics, engine: Engine) -> Dispatcher:
    d = config.delivery
    return Dispatcher(store, config.contacts, metrics, engine.outbox_wakeup, time.time,
                      policy=d, on_unreachable=engine.unreachable,
                      storm=StormPolicy(d.storm_threshold, d.storm_window, d.storm_interval))
