"""Pushover emergency priority: the page repeats on the phone until acknowledged there.

Calls used (Pushover's message and receipt APIs):
- `POST <api_url>/1/messages.json` (form: token, user, title, message,
  priority=2, retry, expire) answers `{"status": 1, "receipt": "..."}`;
- `GET <api_url>/1/receipts/<receipt>.json?token=...` answers `acknowledged`,
  `acknowledged_at`, `acknowledged_by` (a user key), `acknowledged_by_device`,
  `expired`; polled every `poll_interval` (Pushover asks for >= 5 s);
- `POST <api_url>/1/receipts/<receipt>/cancel.json` stops the repeats once the
  incident was acknowledged some other way.

Pushover carries no data back, so the answer's token is the one the agent made
for that page and kept with the receipt; the receipt itself only ever reached
the agent. Identity: `acknowledged_by` must be the contact's user key.
Receipts live in memory: after a restart a pending one is forgotten (the
person can still use the link, or any other channel).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from agent.config_replies import ContactReply, PushoverApp
from notifiers.channels import ChannelResult
from notifiers.replies import Answer, Emit, Page, result, shorten

log = structlog.get_logger(__name__)

SEND_TIMEOUT = 30.0
MAX_RECEIPTS = 1000


@dataclass(slots=True)
class _Pending:
    contact: str
    incident_id: int | None
    token: str
    expires_at: float


class Pushover:
    name = "pushover"

    def __init__(self, app: PushoverApp, contacts: dict[str, ContactReply]) -> None:
        self.app = app
        self.contacts = {n: c for n, c in contacts.items() if c.pushover_user}
        self._receipts: dict[str, _Pending] = {}
        #: Whether an incident still wants its receipts (the supervisor sets it): one
        #: acknowledged elsewhere has its emergency repeats cancelled.
        self.wanted: Callable[[int], bool] = lambda _incident: True
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(SEND_TIMEOUT))
        return self._session

    def serves(self, contact: str) -> bool:
        return contact in self.contacts

    def channel(self, contact: str) -> str:
        return f"pushover-reply://{self.app.api_url.split('://', 1)[-1]}/***"

    async def _message(self, contact: str, title: str, text: str, urgent: bool
                       ) -> tuple[ChannelResult, dict[str, Any]]:
        form = {"token": self.app.token, "user": self.contacts[contact].pushover_user or "",
                "title": shorten(title, 250), "message": shorten(text, 1024)}
        if urgent:
            form |= {"priority": "2", "retry": str(int(self.app.retry)),
                     "expire": str(int(self.app.expire))}
        started = time.monotonic()
        try:
            async with self._http().post(f"{self.app.api_url}/1/messages.json", data=form) as r:
                data = await r.json(content_type=None)
                ok = r.status < 300 and isinstance(data, dict) and data.get("status") == 1
                return (result(self.channel(contact), "pushover", started, ok,
                               "delivered" if ok else f"HTTP {r.status}", status=r.status),
                        data if isinstance(data, dict) else {})
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return result(self.channel(contact), "pushover", started, False,
                          f"failed ({type(exc).__name__})"), {}

    async def send(self, page: Page) -> ChannelResult:
        urgent = bool(page.tokens.get("ack"))
        res, data = await self._message(page.contact, page.title, page.body, urgent)
        receipt = data.get("receipt")
        if res.ok and urgent and isinstance(receipt, str):
            if len(self._receipts) >= MAX_RECEIPTS:  # the oldest goes: bounded memory
                self._receipts.pop(next(iter(self._receipts)))
            self._receipts[receipt] = _Pending(page.contact, page.incident_id,
                                               page.tokens["ack"], time.time() + self.app.expire)
        return res

    async def confirm(self, answer: Answer, text: str) -> None:
        if answer.contact in self.contacts:
            res, _ = await self._message(answer.contact, "onwatch", text, False)
            if not res.ok:
                log.warning("reply_confirm_failed", channel="pushover", contact=answer.contact,
                            detail=res.detail)

    def forget(self, incident_id: int) -> list[str]:
        """Receipts of an incident that no longer needs them (to cancel)."""
        gone = [r for r, p in self._receipts.items() if p.incident_id == incident_id]
        for r in gone:
            self._receipts.pop(r, None)
        return gone

    async def cancel(self, incident_id: int) -> None:
        for receipt in self.forget(incident_id):
            try:
                async with self._http().post(
                        f"{self.app.api_url}/1/receipts/{receipt}/cancel.json",
                        data={"token": self.app.token}) as r:
                    await r.read()
            except (aiohttp.ClientError, TimeoutError):
                log.warning("pushover_cancel_failed", incident=incident_id)

    async def listen(self, emit: Emit) -> None:
        log.info("reply_channel_connected", channel="pushover")
        while True:
            for receipt, pending in list(self._receipts.items()):
                if pending.incident_id is not None and not self.wanted(pending.incident_id):
                    await self.cancel(pending.incident_id)
                    continue
                await self._poll(receipt, pending, emit)
            await asyncio.sleep(self.app.poll_interval)

    async def _poll(self, receipt: str, pending: _Pending, emit: Emit) -> None:
        url = f"{self.app.api_url}/1/receipts/{receipt}.json"
        async with self._http().get(url, params={"token": self.app.token}) as r:
            data = await r.json(content_type=None) if r.status == 200 else None
        if not isinstance(data, dict) or data.get("status") != 1:
            if time.time() > pending.expires_at:
                self._receipts.pop(receipt, None)
            return
        if data.get("acknowledged") == 1:
            self._receipts.pop(receipt, None)
            by = data.get("acknowledged_by")
            contact = pending.contact if by == self.contacts[pending.contact].pushover_user \
                else None
            device = data.get("acknowledged_by_device")
            who = "pushover user" + (f" on {device}" if isinstance(device, str) else "")
            await emit(Answer("pushover", contact, pending.token, who))
        elif data.get("expired") == 1:
            self._receipts.pop(receipt, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
