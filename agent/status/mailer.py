"""Sends subscriber mail from the store, with the outbox's retry rules, over SMTP.

Why its own sender and not Apprise's mailto://: subscriber addresses are
private, and a channel through Apprise is named by its URL, which for e-mail
carries the recipient, in logs, the timeline and the outbox's records; and
Apprise cannot set the RFC 8058 headers (`List-Unsubscribe` with
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`) that let a mail client
unsubscribe in one click. So this speaks SMTP itself (stdlib smtplib, in a
thread), and logs subscriber ids only.

The rules are the outbox's: a message is stored before it is sent (the
publisher queued it with its notice) and marked after; a temporary failure
(no answer, a 4xx) is retried with `agent.outbox.backoff` up to
`[notifications] retry_cap`, until `deadline`; a 5xx for the recipient is
permanent. At most `max_per_minute` messages leave a minute, so a long list
does not get the relay to refuse us. Mail for somebody who unsubscribed
after it was queued is dropped unsent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import structlog

from agent.config_notify import DeliveryPolicy
from agent.config_status import EmailConfig
from agent.outbox import backoff
from agent.store.status import Mail, StatusStore

log = structlog.get_logger(__name__)

IDLE_POLL = 30.0


def compose(cfg: EmailConfig, to: str, mail: Mail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = cfg.sender
    msg["To"] = to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(dt.datetime.fromtimestamp(mail.created_at, dt.UTC))
    # Stable per queued message: a repeat after a crash is recognisably the same one.
    msg["Message-ID"] = make_msgid(idstring=mail.id, domain=cfg.sender.rpartition("@")[2])
    msg["List-Unsubscribe"] = f"<{mail.unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.body)
    return msg


class _Refused(Exception):
    """The relay refused this recipient for good (a 5xx): do not try again."""


def _send(cfg: EmailConfig, messages: list[tuple[str, EmailMessage]], timeout: float
          ) -> dict[str, str | None]:
    """Runs in a thread: one connection, every message; mail id -> None (sent) or error."""
    out: dict[str, str | None] = {}
    with smtplib.SMTP(cfg.host, cfg.port, timeout=timeout) as smtp:
        if cfg.starttls != "off":
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
            elif cfg.starttls == "require":
                raise smtplib.SMTPException("the relay does not offer STARTTLS")
        if cfg.username and cfg.password:
            smtp.login(cfg.username, cfg.password)
        for mail_id, msg in messages:
            try:
                smtp.send_message(msg)
                out[mail_id] = None
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [c for c, _ in exc.recipients.values()]
                out[mail_id] = ("permanent" if codes and all(c >= 500 for c in codes)
                                else "temporary") + f": refused ({codes[0] if codes else '?'})"
            except smtplib.SMTPResponseException as exc:
                out[mail_id] = ("permanent" if exc.smtp_code >= 500 else "temporary") + \
                    f": SMTP {exc.smtp_code}"
    return out


class Mailer:
    def __init__(self, store: StatusStore, cfg: EmailConfig, policy: DeliveryPolicy,
                 wakeup: asyncio.Event, clock: Callable[[], float]) -> None:
        self.store = store
        self.cfg = cfg
        self.policy = policy
        self.wakeup = wakeup
        self.clock = clock
        self._sent: collections.deque[float] = collections.deque()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        #: False on a standby (agent/leader.py): only the leader sends subscriber mail.
        self.may_send: Callable[[], bool] = lambda: True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-mailer")

    async def stop(self, grace: float) -> None:
        """Let a send under way finish for `grace` s; what is cut off stays due."""
        self._stopping = True
        self.wakeup.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _budget(self, now: float) -> int:
        while self._sent and self._sent[0] <= now - 60:
            self._sent.popleft()
        return self.cfg.max_per_minute - len(self._sent)

    async def _run(self) -> None:
        while not self._stopping:
            self.wakeup.clear()
            now = self.clock()
            budget = self._budget(now)
            batch = (self.store.due_mail(now, limit=max(0, min(budget, 100)))
                     if self.may_send() else [])
            if batch:
                await self.send(batch)
                continue
            nxt = self.store.next_mail_at()
            delay = IDLE_POLL if nxt is None else max(0.05, min(IDLE_POLL, nxt - now))
            if budget <= 0 and self._sent:
                delay = max(0.05, self._sent[0] + 60 - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), delay)

    async def send(self, batch: list[Mail]) -> None:
        ready: list[tuple[str, EmailMessage]] = []
        dropped: list[Mail] = []
        for m in batch:
            sub = self.store.subscriber(sid=m.subscriber_id)
            # A pending subscriber gets its confirmation only; nobody unsubscribed gets any.
            if sub is None or sub.state == "unsubscribed" or (
                    sub.state == "pending" and m.kind != "confirm"):
                dropped.append(m)
            else:
                ready.append((m.id, compose(self.cfg, sub.address, m)))
        try:
            results = await asyncio.to_thread(_send, self.cfg, ready, self.policy.send_timeout) \
                if ready else {}
        except (OSError, smtplib.SMTPException) as exc:
            why = f"temporary: {type(exc).__name__}"
            results = {mid: why for mid, _ in ready}
        now = self.clock()
        with self.store.store.tx():
            for m in dropped:
                self.store.mark_mail(m.id, status="dropped", attempts=m.attempts,
                                     next_attempt_at=now, error="unsubscribed")
            for m in batch:
                if m.id in results:
                    self._record(m, results[m.id], now)
        for m in batch:
            if m.id in results and results[m.id] is None:
                self._sent.append(now)

    def _record(self, m: Mail, error: str | None, now: float) -> None:
        attempts = m.attempts + 1
        if error is None:
            self.store.mark_mail(m.id, status="delivered", attempts=attempts,
                                 next_attempt_at=now, error=None)
            log.info("status_mail_delivered", mail=m.id, subscriber=m.subscriber_id)
            return
        wait = backoff(attempts, self.policy.retry_cap)
        if not error.startswith("permanent") and now + wait <= m.created_at + \
                self.policy.deadline:
            self.store.mark_mail(m.id, status="due", attempts=attempts,
                                 next_attempt_at=now + wait, error=error)
            log.warning("status_mail_retry", mail=m.id, subscriber=m.subscriber_id,
                        attempt=attempts, error=error, next_in_s=wait)
        else:
            self.store.mark_mail(m.id, status="failed", attempts=attempts,
                                 next_attempt_at=now, error=error)
            log.error("status_mail_failed", mail=m.id, subscriber=m.subscriber_id,
                      attempt=attempts, error=error)
