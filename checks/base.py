"""The contract every probe keeps: one async call in, one `CheckResult` out.

A probe is `async def probe(spec, ctx) -> CheckResult`. It never raises for a
failing target (a refused connection, a TLS error, a wrong status are data),
never sleeps or retries on its own, and never enforces its own deadline: the
scheduler wraps every call in `asyncio.timeout()` and turns expiry into a
`timeout` result. Library exceptions are translated once, at the probe's
boundary, into an `ErrorKind` and a reason a person understands.

The result types themselves live in checks/result.py (light, for the pure core);
this module holds what running a probe needs: `ProbeContext`, `Probe` and
`run_with_deadline`, which also stamps each result's `checked_at`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import structlog

from checks import redact
from checks.result import CheckResult, ErrorKind

log = structlog.get_logger(__name__)


class ProbeContext:
    """Shared, long-lived resources a probe may use; owned by the runner.

    One HTTP session serves every http check so that a check costs a request,
    not a session. Its connector closes each connection after use: a monitor
    must see the target's accept path every time (a listener that stopped
    accepting new connections is an outage even while an old keep-alive
    connection still answers).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        #: The agent's clock (agent/steadyclock.py in the daemon): what a heartbeat's
        #: deadline is measured with, so that a wall-clock step does not fake a miss.
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._ssl_contexts: dict[str | None, ssl.SSLContext] = {}
        #: Push checks (heartbeat): check name -> unix time of the last accepted ping,
        #: written by the web handler, read by the probe.
        self.heartbeats: dict[str, float] = {}
        #: Heartbeat checks: when the agent began waiting for each (before a first ping).
        self.heartbeat_watch_since: dict[str, float] = {}
        #: What a kind keeps from one run to the next (the host kind's previous disk
        #: samples, for fill rates), keyed by kind. Runtime memory only, never config.
        self.kind_state: dict[str, Any] = {}

    def http_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                force_close=True, limit=0, ttl_dns_cache=60, enable_cleanup_closed=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Deadlines belong to the scheduler; the session must not add its own.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                # Checks share the session, not their cookies: one site's session
                # cookie must not change what another check (or the next run) sees.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": "onwatch/0.1 (+monitoring)"},
            )
        return self._session

    def ssl_context(self, ca_file: str | None) -> ssl.SSLContext:
        """A verifying context, trusting `ca_file` instead of the system store when given.

        Contexts are cached: loading a CA store costs milliseconds, a check
        should not pay that on every run.
        """
        ctx = self._ssl_contexts.get(ca_file)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=ca_file)
            self._ssl_contexts[ca_file] = ctx
        return ctx

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Probe(Protocol):
    async def __call__(self, spec: Any, ctx: ProbeContext, /) -> CheckResult: ...


async def run_with_deadline(probe: Probe, spec: Any, ctx: ProbeContext, timeout: float,
                            *, clock: Callable[[], float] = time.time) -> CheckResult:
    """Run one probe under the scheduler's deadline; never raises (except cancellation).

    The one place where a deadline becomes a `timeout` result, where a probe bug
    becomes an `internal` result instead of killing its check's task, where a
    result gets its `checked_at`: `clock()` (wall time) when the run ended, and where
    every reason is cleaned of the secrets the probe sent (checks/redact.py).
    """
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            result = await probe(spec, ctx)
    except TimeoutError:
        took = time.perf_counter() - started
        result = CheckResult.failure(ErrorKind.TIMEOUT,
                                     f"no complete answer within {timeout:g}s", took)
    except Exception as exc:  # a probe bug: keep the check alive and say so
        # The stack, not exc_info: an exception's text may quote a target's answer.
        log.error("probe_crashed", probe=getattr(probe, "__module__", "?"),
                  stack=redact.for_spec(spec).text(traceback.format_exc()))
        result = CheckResult.failure(
            ErrorKind.INTERNAL, f"onwatch bug in the probe: {type(exc).__name__}: {exc}",
            time.perf_counter() - started,
        )
    # The one boundary every reason crosses: secrets a target echoed back stop here.
    return redact.result(spec, dataclasses.replace(result, checked_at=clock()))
