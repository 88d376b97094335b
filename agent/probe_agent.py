"""`onwatch probe --config probe.toml`: run the central's checks from another place.

A probe at a client site or in a cloud region fetches the checks assigned to
its location from the central (`GET /probe/v1/checks`, signed), runs them
with the same probes and scheduler as the agent, and sends every result to
the central in signed batches (`POST /probe/v1/results`), outbound only. It
confirms failures with quick re-checks exactly as the agent does (its own
outage state, only to decide when to re-check); whether anything pages is
the central's decision.

While the central is unreachable it keeps checking: results wait on disk
(agent/probe_buffer.py, bounded by size and age) and go in order, with their
original times, once it answers again. The last check list fetched is kept
on disk too, so a probe restarted during an outage of the central runs the
checks it had. SIGTERM/SIGINT stop it (exit 0); what was not sent stays on
disk for the next start.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
from typing import Any

import aiohttp
import structlog

from agent import config as configmod
from agent import probe_wire
from agent.config import CheckConfig
from agent.config_probe import ProbeFile
from agent.detect import outage
from agent.detect.outage import OutageState
from agent.probe_buffer import Buffer
from agent.scheduler import Scheduler
from checks.base import ProbeContext
from checks.result import CheckResult

log = structlog.get_logger(__name__)

BACKOFF_MAX = 60.0
REQUEST_TIMEOUT = 20.0


class CentralRefused(Exception):
    """The central answered, but not with what was asked (the message says what)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Probe:
    def __init__(self, cfg: ProbeFile) -> None:
        self.cfg = cfg
        self.key_id, self.key = probe_wire.parse_key(cfg.key)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.buffer = Buffer(cfg.state_dir, cfg.name, max_bytes=cfg.buffer_max_bytes,
                             max_age=cfg.buffer_max_age)
        self._cache = cfg.state_dir / "checks.json"
        self._states: dict[str, OutageState] = {}
        self._checks: dict[str, CheckConfig] = {}
        self._tables: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        #: Which of the central's URLs is tried first (the last one that answered).
        self._at = 0
        self._ssl: ssl.SSLContext | bool = (ssl.create_default_context(cafile=cfg.ca_file)
                                            if cfg.ca_file else True)

    @property
    def checks(self) -> dict[str, CheckConfig]:
        return self._checks

    # -- talking to the central ------------------------------------------------

    @property
    def central(self) -> str:
        return self.cfg.centrals[self._at % len(self.cfg.centrals)]

    async def _request(self, session: aiohttp.ClientSession, method: str, path: str,
                       body: bytes = b"") -> Any:
        """One signed request to the central; with several URLs, the next one is tried when
        one fails (down, or a standby refusing results), each at most once."""
        for _ in range(len(self.cfg.centrals) - 1):
            try:
                return await self._request_one(session, method, path, body)
            except (aiohttp.ClientError, TimeoutError, CentralRefused, ValueError) as exc:
                log.info("probe_central_next", central=self.central,
                         error=str(exc) or type(exc).__name__)
                self._at += 1
        return await self._request_one(session, method, path, body)

    async def _request_one(self, session: aiohttp.ClientSession, method: str, path: str,
                           body: bytes = b"") -> Any:
        headers = probe_wire.sign_headers(self.cfg.name, self.key_id, self.key, method, path,
                                          int(time.time()), body)
        if body:
            headers["Content-Type"] = "application/json"
        async with session.request(method, self.central + path, data=body or None,
                                   headers=headers, ssl=self._ssl) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise CentralRefused(f"{method} {path}: HTTP {resp.status}: {text[:300]}",
                                     resp.status)
            return json.loads(text)

    def failure(self, exc: BaseException) -> dict[str, str]:
        """A failed request's log fields; a refused key says what the operator must do."""
        fields = {"error": str(exc) or type(exc).__name__}
        if isinstance(exc, CentralRefused) and exc.status == 401:
            fields["hint"] = (f"the central refuses this probe's key (revoked, replaced or "
                              f"never added): run `onwatch probe add {self.cfg.name}` on the "
                              "central and put the key it prints in probe.toml")
        return fields

    async def fetch_checks(self, session: aiohttp.ClientSession) -> bool:
        """Fetch the check list; True when it changed (and was applied)."""
        doc = await self._request(session, "GET", "/probe/v1/checks")
        tables = doc.get("checks") if isinstance(doc, dict) else None
        if not isinstance(tables, list):
            raise CentralRefused("the central's check list is not a list")
        if tables == self._tables:
            return False
        self._apply(tables)
        tmp = self._cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(tables))
        tmp.replace(self._cache)
        return True

    def load_cached(self) -> bool:
        try:
            tables = json.loads(self._cache.read_text())
        except (OSError, ValueError):
            return False
        if isinstance(tables, list):
            self._apply(tables)
            log.info("probe_checks_from_cache", checks=len(self._checks))
            return True
        return False

    def _apply(self, tables: list[dict[str, Any]]) -> None:
        raw = {"agent": {"state_dir": str(self.cfg.state_dir)}, "checks": tables}
        try:
            parsed = configmod.parse(raw, self.cfg.source)
        except configmod.ConfigError as exc:
            # One check this probe cannot run (an environment variable it lacks): say so;
            # keep running what it had.
            log.error("probe_checks_invalid", errors=exc.problems[:20])
            return
        self._tables = tables
        self._checks = {c.name: c for c in parsed.checks}
        log.info("probe_checks", checks=sorted(self._checks))

    # -- results ---------------------------------------------------------------

    def on_result(self, check: CheckConfig, result: CheckResult, lateness: float) -> bool:
        step = outage.observe(self._states.get(check.name, OutageState()), check.name, result,
                              confirm=check.confirm, recover=check.recover,
                              now=result.checked_at)
        self._states[check.name] = step.state
        try:
            self.buffer.add(probe_wire.result_to_json(check.name, result))
        except OSError as exc:  # a full disk: the result is lost, the probe goes on
            log.error("probe_buffer_write_failed", check=check.name, error=str(exc))
        self._wake.set()
        return step.recheck

    async def send_loop(self, session: aiohttp.ClientSession) -> None:
        backoff = 1.0
        while True:
            batch = self.buffer.next_batch(time.time())
            if batch is None:
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(self.cfg.report_every)  # gather a few results
                continue
            seq, body = batch
            try:
                answer = await self._request(session, "POST", "/probe/v1/results", body)
            except (aiohttp.ClientError, TimeoutError, CentralRefused, ValueError) as exc:
                log.warning("probe_send_failed", **self.failure(exc),
                            waiting=self.buffer.waiting(), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = 1.0
            self.buffer.done(seq)
            log.debug("probe_batch_sent", seq=seq, answer=answer)

    async def refresh_loop(self, session: aiohttp.ClientSession, scheduler: Scheduler) -> None:
        while True:
            await asyncio.sleep(self.cfg.refresh_every)
            before = dict(self._checks)
            try:
                changed = await self.fetch_checks(session)
            except (aiohttp.ClientError, TimeoutError, CentralRefused, ValueError) as exc:
                log.warning("probe_refresh_failed", **self.failure(exc))
                continue
            if changed:
                restart = {n for n, c in self._checks.items() if n in before and before[n] != c}
                scheduler.update(list(self._checks.values()), restart)

    async def first_checks(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> bool:
        """The check list from the central, else the cached one; waits (with backoff)
        while there is neither. False when stopped first."""
        backoff = 1.0
        for _ in range(100_000):
            try:
                await self.fetch_checks(session)
                return True
            except (aiohttp.ClientError, TimeoutError, CentralRefused, ValueError) as exc:
                log.warning("probe_central_unreachable", central=list(self.cfg.centrals),
                            **self.failure(exc))
                if self.load_cached():
                    return True
            try:
                await asyncio.wait_for(stop.wait(), backoff)
                return False
            except TimeoutError:
                backoff = min(backoff * 2, BACKOFF_MAX)
        return False


async def run(cfg: ProbeFile, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    probe = Probe(cfg)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if not await probe.first_checks(session, stop):
            return
        ctx = ProbeContext()
        scheduler = Scheduler(list(probe.checks.values()), ctx, probe.on_result,
                              max_concurrency=cfg.max_concurrency)
        scheduler.start()
        tasks = [asyncio.create_task(probe.send_loop(session), name="probe-send"),
                 asyncio.create_task(probe.refresh_loop(session, scheduler),
                                     name="probe-refresh")]
        log.info("probe_started", probe=cfg.name, central=list(cfg.centrals),
                 checks=len(probe.checks), waiting=probe.buffer.waiting())
        try:
            await stop.wait()
        finally:
            await scheduler.stop(3.0)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ctx.close()
            probe.buffer.close()
            log.info("probe_stopped", waiting=probe.buffer.waiting())
