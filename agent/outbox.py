"""Sends what the outbox holds; records every outcome in the incident's timeline.

Messages are in the store before this runs (the engine enqueues them in the
same transaction as the incident change), so delivery is at-least-once: a
crash after Apprise accepted a message but before it was marked delivered
sends it again on restart, with the same message id (it is in the body).

One attempt tries a contact's channels in order and stops at the first that
accepts (push, then SMS, then e-mail), unless the contact says `mode = "all"`.
A channel that fails permanently (a 4xx: bad credentials, a refused request)
is never tried again for that message; temporary failures (5xx, timeouts,
connection errors) are retried with exponential backoff capped at
`retry_cap`, until `deadline` after the message fell due. When an attempt
reaches nobody, the engine is told at once (`on_unreachable`), so the
escalation moves to the next step instead of waiting for an acknowledgement
that cannot come; a message that runs out of time or channels is marked
failed loudly (timeline, error log, metric).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from agent.config_contacts import Contact
from agent.config_notify import DeliveryPolicy
from agent.incidents import TimelineEntry
from agent.metrics import Metrics
from agent.pending import PendingWrites
from agent.store.base import Fenced, Store
from agent.store.records import OutboxMessage
from agent.storm import StormGate, StormPolicy, bundle
from agent.vocab import Entry
from notifiers.channels import ChannelResult, Message
from notifiers.delivery import deliver, redact_short
from notifiers.messages import PAGING_EVENTS

if TYPE_CHECKING:
    from agent.replies import ReplyHub

log = structlog.get_logger(__name__)

IDLE_POLL = 60.0
FIRST_RETRY = 2.0


def backoff(attempts: int, cap: float) -> float:
    """Wait before attempt `attempts + 1`: 2 s, 4 s, 8 s ... never more than `cap`."""
    return float(min(cap, FIRST_RETRY * 2 ** max(0, attempts - 1)))


class Dispatcher:
    def __init__(self, store: Store, contacts: Mapping[str, Contact], metrics: Metrics,
                 wakeup: asyncio.Event, clock: Callable[[], float], *,
                 policy: DeliveryPolicy | None = None,
                 on_unreachable: Callable[[int, str, str], None] | None = None,
                 storm: StormPolicy | None = None,
                 storm_for: Callable[[str], StormPolicy] | None = None,
                 parallel: int = 8, replies: ReplyHub | None = None) -> None:
        self._store = store
        self._contacts = contacts
        self._metrics = metrics
        self._wakeup = wakeup
        self._clock = clock
        self._policy = policy or DeliveryPolicy()
        self._on_unreachable = on_unreachable
        #: Reply channels (ntfy, Telegram, e-mail, Pushover): tried before the Apprise URLs.
        self._replies = replies
        self._sem = asyncio.Semaphore(parallel)
        self._gate = StormGate(storm or StormPolicy(), storm_for)
        #: When the agent's own uplink was found down (None: it is up).
        self.offline_since: float | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        #: The engine's writes the store has not taken (agent/pending.py), if wired.
        self.pending: PendingWrites | None = None
        #: Told when the store says another instance leads (agent/leader.py).
        self.on_fenced: Callable[[str], None] = lambda _why: None
        self._unstored: set[asyncio.Task[None]] = set()

    def reconfigure(self, contacts: Mapping[str, Contact], policy: DeliveryPolicy) -> None:
        """A reloaded config: messages due from now on use these contacts and this policy."""
        self._contacts, self._policy = contacts, policy

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

    def deliver_unstored(self, msgs: list[OutboxMessage]) -> None:
        """Send messages the store could not take, from memory, now (a page must not wait
        for the disk); the outcome goes to the pending write, or to the row once stored."""
        task = asyncio.create_task(self._from_memory(msgs), name="outbox:unstored")
        self._unstored.add(task)
        task.add_done_callback(self._unstored.discard)

    async def _from_memory(self, msgs: list[OutboxMessage]) -> None:
        for m in msgs:
            # Not fenced: the store cannot be read (that is why it goes from memory).
            a = await self._send([m], Message(m.title, m.body, m.short), fence=False)
            ok = any(r.ok for r in a.results)
            log.warning("notification_sent_from_memory", incident=m.incident_id,
                        contact=m.contact, message_id=m.id, delivered=ok)
            if self.pending is None or not self.pending.settle(m.id, ok, self._clock()):
                with contextlib.suppress(*self._store.errors):  # stored by now: record as usual
                    self._record(m, a.contact, a.results, a.dead)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._pass()
            except Fenced as exc:  # a standby, or a leader no longer: nothing is sent
                self.on_fenced(str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), 1.0)
            except self._store.errors as exc:  # the store refuses writes: wait, then go on
                self._metrics.store_errors.inc()
                log.error("outbox_store_failed", error=str(exc))
                await asyncio.sleep(1.0)

    async def _pass(self) -> None:
        """Send what is due; when nothing is, wait for the next due time or a wakeup."""
        self._wakeup.clear()
        self._store.fence()
        now = self._clock()
        batch = self._store.due_messages(now, limit=1000)
        self._refresh_gauges()
        if batch:
            done = await asyncio.gather(*(self._send_group(ms, now)
                                          for ms in _by_contact(batch).values()))
            attempts = [a for group in done for a in group]
            self._uplink([r for a in attempts for r in a.results])
            for a in attempts:
                for m in a.msgs:
                    self._record(m, a.contact, a.results, a.dead, bundled=len(a.msgs))
            return
        nxt = self._store.next_due_at()
        delay = IDLE_POLL if nxt is None else max(0.05, min(IDLE_POLL, nxt - self._clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), delay)

    def _refresh_gauges(self) -> None:
        self._metrics.outbox_due.set(self._store.outbox_counts().get("due", 0))
        oldest = self._store.oldest_due_created_at()
        self._metrics.outbox_oldest_age.set(0 if oldest is None else self._clock() - oldest)

    async def _send_group(self, msgs: list[OutboxMessage], now: float) -> list[_Attempt]:
        """A recipient's due messages: one by one, bundled (a storm), or held for the bundle."""
        # Only pages count towards a storm: resolved and acknowledged notices ride
        # along in a bundle once there is one, but never start one.
        pages = sum(m.event in PAGING_EVENTS for m in msgs)
        how, until = self._gate.decide(msgs[0].contact, pages, now)
        if how == "each" and pages < len(msgs) and len(msgs) > 1 and self._gate.storming(
                msgs[0].contact, now):
            how = "bundle"
        if how == "hold":
            with self._store.tx():
                for m in msgs:
                    self._store.postpone(m.id, until)
            return []
        if how == "each":
            return [await self._send([m], Message(m.title, _late(m, now, m.body), m.short))
                    for m in msgs]
        return [await self._send(msgs, bundle(msgs))]

    async def _send(self, msgs: list[OutboxMessage], content: Message, *,
                    fence: bool = True) -> _Attempt:
        contact = self._contacts.get(msgs[0].contact)
        dead = frozenset(json.loads(msgs[0].dead_channels))
        async with self._sem:
            if fence:  # still the leader, just before it goes out (agent/leader.py)
                self._store.fence()
            results: list[ChannelResult] = []
            if contact is not None and self._replies is not None:
                results = await self._replies.deliver(contact.name, msgs, content, dead)
            if contact is not None and not (contact.fallback and any(r.ok for r in results)):
                results += await deliver(contact.urls, content, fallback=contact.fallback,
                                         skip=dead, timeout=self._policy.send_timeout)
        if any(r.ok for r in results) and any(m.event in PAGING_EVENTS for m in msgs):
            self._gate.sent(msgs[0].contact, self._clock())
        return _Attempt(msgs, contact, results, dead)

    def _uplink(self, results: list[ChannelResult]) -> None:
        """Own uplink lost when every attempt of a pass failed without any answer from
        two or more different services; back with the first delivery."""
        now = self._clock()
        if any(r.ok for r in results):
            if self.offline_since is not None:
                log.warning("uplink_restored", offline_s=round(now - self.offline_since, 1))
            self.offline_since = None
        elif (results and all(r.network for r in results)
              and len({_host(r.channel) for r in results}) >= 2
              and self.offline_since is None):
            self.offline_since = now
            log.error("uplink_lost", channels=len(results))
        self._metrics.uplink_up.set(0 if self.offline_since is not None else 1)

    def _record(self, msg: OutboxMessage, contact: Contact | None, results: list[ChannelResult],
                dead: frozenset[str], bundled: int = 1) -> None:
        now, attempts, p = self._clock(), msg.attempts + 1, self._policy
        dead = dead | {r.channel for r in results if r.permanent}
        for r in results:
            self._metrics.notifications.labels(r.kind, "ok" if r.ok else (
                "rejected" if r.permanent else "failed")).inc()
        channels = [{"channel": r.channel, "ok": r.ok, "detail": r.detail,
                     "permanent": r.permanent, "elapsed_s": round(r.elapsed_s, 3)}
                    for r in results]
        left = [] if contact is None else [u for u in contact.urls if redact_short(u) not in dead]
        wait = backoff(attempts, p.retry_cap)
        error: str | None = None
        if any(r.ok for r in results):
            status, next_at, kind = "delivered", now, Entry.NOTIFICATION_DELIVERED
            text = f"{msg.event} message delivered to {msg.contact}" + (
                f" in a bundle of {bundled} (alert storm)" if bundled > 1 else "")
            self._metrics.delivery_latency.observe(now - msg.created_at)
        else:
            error = ("contact is no longer in the configuration" if contact is None else
                     "every channel refused it permanently" if not left else
                     "every channel failed")
            if left and self.offline_since is not None:
                # Nobody can be reached from here: hold the message (no deadline, no
                # escalation); it goes out, with its original times, once we are back.
                status, next_at, kind = "due", now + p.retry_cap, Entry.NOTIFICATION_HELD
                text = (f"{msg.event} message to {msg.contact} held: onwatch cannot reach "
                        f"the outside (attempt {attempts})")
                error = "uplink down"
            elif left and now + wait <= msg.created_at + p.deadline:
                status, next_at, kind = "due", now + wait, Entry.NOTIFICATION_RETRY
                text = (f"{msg.event} message to {msg.contact} not delivered ({error}); "
                        f"attempt {attempts}, next in {wait:g}s")
            else:
                status, next_at, kind = "failed", now, Entry.NOTIFICATION_FAILED
                text = (f"{msg.event} message to {msg.contact} could not be delivered after "
                        f"{attempts} attempt(s): {error}")
        self._metrics.incidents.page_outcome(msg.event in PAGING_EVENTS, kind)
        with self._store.tx():
            self._store.update_message(msg.id, status=status, attempts=attempts,
                                       next_attempt_at=next_at,
                                       delivered_at=now if status == "delivered" else None,
                                       last_error=error, dead_channels=json.dumps(sorted(dead)))
            if msg.incident_id is not None:
                self._store.append(msg.incident_id, [TimelineEntry(
                    now, kind, msg.contact, text, {"message_id": msg.id, "channels": channels})])
        level = log.info if status == "delivered" else log.error
        level(kind, incident=msg.incident_id, contact=msg.contact, message_id=msg.id,
              attempt=attempts, channels=[f"{c['channel']}: {c['detail']}" for c in channels])
        if error is not None and attempts == 1 and msg.incident_id is not None \
                and self._on_unreachable is not None and self.offline_since is None:
            self._on_unreachable(msg.incident_id, msg.contact, msg.event)


def _by_contact(batch: list[OutboxMessage]) -> dict[str, list[OutboxMessage]]:
    groups: dict[str, list[OutboxMessage]] = {}
    for m in batch:
        groups.setdefault(m.contact, []).append(m)
    return groups


@dataclass(frozen=True, slots=True)
class _Attempt:
    msgs: list[OutboxMessage]
    contact: Contact | None
    results: list[ChannelResult]
    dead: frozenset[str]


def _host(channel: str) -> str:
    """The service a channel talks to (host:port), for "are they all down together"."""
    return urlsplit(channel).netloc.rsplit("@", 1)[-1] or channel


def _late(msg: OutboxMessage, now: float, body: str) -> str:
    """A message sent long after it fell due says so, with its original time."""
    if now - msg.created_at < 60:
        return body
    queued = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(msg.created_at))
    return f"{body}\n(Sent late: queued at {queued}; it could not be delivered until now.)"
