"""SIGHUP (`systemctl reload onwatch`): a new config without a restart, or none at all.

`Reloader.request()` (the SIGHUP handler) reads the new file -- the
`--reload-config` path when it exists (where the systemd unit's ExecReload
stages /etc/onwatch, because credentials are loaded once per start), else
the `--config` path again -- and validates it completely, off the event
loop. Then:

- any problem: every one is logged (`config_reload_problem`, error
  priority, one line each, naming its key path), the running config stays
  as it is, and `onwatch_config_last_reload_successful` is 0;
- valid: `diff()` says which checks were added, removed and changed, and
  `apply()` hands the new config to the engine, the runner, the outbox and
  the scheduler. Unchanged checks go on untouched (their detection state,
  their schedule); changed ones start over with their new settings but keep
  their state; removed ones stop and their open incidents are resolved;
  added ones start. Open incidents and their escalations continue: their
  state lives in the store, and the engine reads the (possibly changed)
  policy at each step, so a changed policy applies from the next step.
  Settings only read at start (listen address, state directory, the store
  and the instance's name, the concurrency cap, log level, retention, heartbeat, and the [web] and
  [status] sections, and each tenant's [status]: the public listener and the
  status pages) are logged as
  needing a restart (`config_reload_needs_restart`) and keep their running
  values.

Requests that arrive while a reload runs are folded into one more reload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Gauge

from agent import config as configmod
from agent.config import AgentConfig, Config

if TYPE_CHECKING:
    from agent.engine import Engine
    from agent.outbox import Dispatcher
    from agent.probe_intake import ProbeHub
    from agent.runner import Runner
    from agent.scheduler import Scheduler

log = structlog.get_logger(__name__)

#: [agent] settings read only at start; the others (time zone, public URL, API token)
#: are read where they are used and so take effect at once.
AT_START = ("state_dir", "listen_host", "listen_port", "max_concurrency", "log_level",
            "service", "store", "instance")  # the store is opened, and leadership taken, once
#: Whole sections read only at start: the public listener and the status page.
SECTIONS_AT_START = ("web", "status")


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    #: [agent] settings that differ but take effect only at the next start.
    needs_restart: tuple[str, ...] = ()
    #: Other top-level sections that differ (contacts, escalation, delivery ...).
    other: tuple[str, ...] = ()


def diff(old: Config, new: Config) -> Changes:
    """What a reload from `old` to `new` changes (pure)."""
    before = {c.name: c for c in old.checks}
    after = {c.name: c for c in new.checks}
    restart = tuple(f.name for f in fields(AgentConfig)
                    if f.name in AT_START and getattr(old.agent, f.name) != getattr(new.agent,
                                                                                    f.name))
    restart += tuple(name for name in SECTIONS_AT_START
                     if getattr(old, name) != getattr(new, name))
    other = tuple(name for name in ("contacts", "escalation", "delivery", "templates",
                                    "maintenance", "tenants")
                  if getattr(old, name) != getattr(new, name))
    # A client's status page is built at start, like the provider's (pages/status_routes.py).
    pages = [{n: (t.status, t.host) for n, t in c.tenants.items()} for c in (old, new)]
    restart += ("tenants.status",) if pages[0] != pages[1] else ()
    return Changes(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple(n for n in after if n in before and after[n] != before[n]),
        needs_restart=restart, other=other)


def keep_start_settings(old: Config, new: Config) -> Config:
    """`new` with the [agent] settings that only apply at start taken from `old`."""
    kept = {name: getattr(old.agent, name) for name in AT_START}
    sections = {name: getattr(old, name) for name in SECTIONS_AT_START}
    return replace(new, agent=replace(new.agent, **kept), **sections)


def applier(engine: Engine, runner: Runner, dispatcher: Dispatcher, scheduler: Scheduler,
            probes: ProbeHub | None = None) -> Callable[[Config, Changes], None]:
    """The one place a new config reaches the running parts, runner before scheduler so
    that an added check has its state before its first result."""
    def apply(new: Config, changes: Changes) -> None:
        engine.reconfigure(new)
        runner.reconfigure(new)
        dispatcher.reconfigure(new.contacts, new.delivery)
        scheduler.update([c for c in new.checks if c.runs_here], set(changes.changed))
        if probes is not None:
            probes.reconfigure(new)
    return apply


class Reloader:
    def __init__(self, current: Config, staged: Path | None, registry: CollectorRegistry,
                 apply: Callable[[Config, Changes], None]) -> None:
        self.current = current
        self._path = current.source
        self._staged = staged
        self._apply = apply
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.ok = Gauge("onwatch_config_last_reload_successful",
                        "1 when the last reload applied its config (or none was asked for), "
                        "0 when it was refused and the running config was kept",
                        registry=registry)
        self.ok.set(1)
        self.at = Gauge("onwatch_config_last_reload_success_timestamp_seconds",
                        "When the running config was loaded", registry=registry)
        self.at.set(time.time())

    def source(self) -> Path:
        if self._staged is not None and self._staged.exists():
            return self._staged
        return self._path

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="reload")

    async def _run(self) -> None:
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> bool:
        source = self.source()
        log.info("config_reload_started", config=str(source))
        try:
            new = await asyncio.to_thread(configmod.load, source)
        except configmod.ConfigError as exc:
            for problem in exc.problems:
                log.error("config_reload_problem", problem=problem, config=str(source))
            log.error("config_reload_failed", config=str(source), problems=len(exc.problems),
                      kept=str(self.current.source),
                      hint=f"fix what `onwatch validate {source}` names, then reload again")
            self.ok.set(0)
            return False
        changes = diff(self.current, new)
        new = keep_start_settings(self.current, new)
        self._apply(new, changes)
        self.current = new
        self.ok.set(1)
        self.at.set(time.time())
        if changes.needs_restart:
            log.warning("config_reload_needs_restart", settings=list(changes.needs_restart),
                        hint="systemctl restart onwatch")
        log.info("config_reloaded", config=str(source), added=list(changes.added),
                 removed=list(changes.removed), changed=list(changes.changed),
                 other=list(changes.other))
        return True
