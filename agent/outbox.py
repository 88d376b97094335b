"""Sends what the outbox holds; records every outcome in the incident's timeline.

Messages are in the store before this runs (the runner enqueues them in the
same transaction as the incident change), so delivery is at-least-once: a
crash after Apprise accepted a message but before it was marked delivered
sends it again on restart, with the same message id.

A message whose every channel failed is retried with a growing delay
(`BACKOFF`) up to `MAX_ATTEMPTS`, then marked failed in the timeline and
the logs. Per-channel retries inside one attempt are Apprise's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import structlog

from agent.config import Contact
from agent.incidents import TimelineEntry
from agent.metrics import Metrics
from agent.store.sqlite import OutboxMessage, Store
from notifiers import ChannelResult, deliver

log = structlog.get_logger(__name__)

BACKOFF = (10.0, 30.0, 90.0, 270.0, 600.0)
MAX_ATTEMPTS = len(BACKOFF) + 1
IDLE_POLL = 60.0


class Dispatcher:
    def __init__(self, store: Store, contacts: Mapping[str, Contact], metrics: Metrics,
                 wakeup: asyncio.Event, clock: Callable[[], float], *,
                 send_timeout: float = 30.0, parallel: int = 8) -> None:
        self._store = store
        self._contacts = contacts
        self._metrics = metrics
        self._wakeup = wakeup
        self._clock = clock
        self._timeout = send_timeout
        self._sem = asyncio.Semaphore(parallel)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self, grace: float) -> None:
        """Let deliveries under way finish for `grace` s; what is cut off stays due."""
        self._stopping = True
        self._wakeup.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            batch = self._store.due_messages(self._clock())
            self._refresh_gauge()
            if batch:
                await asyncio.gather(*(self._send(m) for m in batch))
                continue
            nxt = self._store.next_due_at()
            delay = IDLE_POLL if nxt is None else max(0.05, min(IDLE_POLL, nxt - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    def _refresh_gauge(self) -> None:
        self._metrics.outbox_due.set(self._store.outbox_counts().get("due", 0))

    async def _send(self, msg: OutboxMessage) -> None:
        contact = self._contacts.get(msg.contact)
        async with self._sem:
            if contact is None:
                results: list[ChannelResult] = []
                error: str | None = f"contact {msg.contact} is no longer in the configuration"
            else:
                results = await deliver(contact.urls, msg.title, msg.body, timeout=self._timeout)
                error = None if any(r.ok for r in results) else "every channel failed"
        self._record(msg, results, error)

    def _record(self, msg: OutboxMessage, results: list[ChannelResult], error: str | None) -> None:
        now = self._clock()
        attempts = msg.attempts + 1
        for r in results:
            self._metrics.notifications.labels(r.kind, "ok" if r.ok else "failed").inc()
        channels = [{"channel": r.channel, "ok": r.ok, "detail": r.detail,
                     "elapsed_s": round(r.elapsed_s, 3)} for r in results]
        if error is None:
            status, next_at, kind = "delivered", now, "notification_delivered"
            text = f"{msg.event} message delivered to {msg.contact}"
        elif attempts < MAX_ATTEMPTS and msg.contact in self._contacts:
            status, next_at, kind = "due", now + BACKOFF[attempts - 1], "notification_retry"
            text = (f"{msg.event} message to {msg.contact} not delivered ({error}); "
                    f"attempt {attempts} of {MAX_ATTEMPTS}, next in {BACKOFF[attempts - 1]:g}s")
        else:
            status, next_at, kind = "failed", now, "notification_failed"
            text = f"{msg.event} message to {msg.contact} could not be delivered: {error}"
        with self._store.tx():
            self._store.update_message(msg.id, status=status, attempts=attempts,
                                       next_attempt_at=next_at,
                                       delivered_at=now if status == "delivered" else None,
                                       last_error=error)
            if msg.incident_id is not None:
                self._store.append(msg.incident_id, [TimelineEntry(
                    now, kind, msg.contact, text, {"message_id": msg.id, "channels": channels})])
        level = log.info if status == "delivered" else log.error
        level(kind, incident=msg.incident_id, contact=msg.contact, message_id=msg.id,
              attempt=attempts, channels=[f"{c['channel']}: {c['detail']}" for c in channels])

