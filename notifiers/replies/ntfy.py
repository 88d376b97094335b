"""ntfy: pages with action buttons; the answers come back on a reply topic.

Publishing (ntfy's "publish as JSON"): `POST <server>/` with
`{"topic", "title", "message", "priority", "tags", "actions"}`. Each button is
an `http` action: when pressed, the phone itself sends
`POST <server>/<reply_topic>` with the contact's own access token in an
`Authorization` header and the signed token as the body, so the answer is a
message on the reply topic. Nothing reaches the agent's network.

Listening: one long-lived `GET <server>/<topic1>,<topic2>/json` (ntfy's JSON
stream: one JSON object a line; "open", "keepalive" and "message" events)
over every contact's reply topic. A stream that ends or goes silent for
longer than `KEEPALIVE_GRACE` (ntfy sends a keepalive every 45 s) is an error:
the supervisor reconnects with a capped backoff, and the new request asks for
`since=<last message id>` so that an answer sent while disconnected is not
lost. Lines that are not a JSON object, events without a topic or message,
and topics of nobody are logged and skipped.

Identity: the reply topic says whose answer it is. On a server with access
control (`auth-default-access: deny-all`) only that contact's token may
publish to it and only the agent's may read it; the token in the body must be
one made for that contact.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import structlog

from agent.config_replies import ContactReply, NtfyServer
from notifiers.channels import ChannelResult
from notifiers.replies import LABELS, MAX_LINE, Answer, Emit, Page, result, shorten

log = structlog.get_logger(__name__)

KEEPALIVE_GRACE = 120.0
SEND_TIMEOUT = 30.0


class Ntfy:
    name = "ntfy"

    def __init__(self, server: NtfyServer, contacts: dict[str, ContactReply]) -> None:
        self.server = server
        self.contacts = {n: c for n, c in contacts.items() if c.ntfy_topic and c.ntfy_reply_topic}
        self._by_reply_topic = {c.ntfy_reply_topic: n for n, c in self.contacts.items()
                                if c.ntfy_reply_topic}
        self._since: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._auth(self.server.token))
        return self._session

    @staticmethod
    def _auth(token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def serves(self, contact: str) -> bool:
        return contact in self.contacts

    def channel(self, contact: str) -> str:
        host = self.server.url.split("://", 1)[-1]
        return f"ntfy-reply://{host}/{self.contacts[contact].ntfy_topic}"

    async def send(self, page: Page) -> ChannelResult:
        me = self.contacts[page.contact]
        body: dict[str, object] = {
            "topic": me.ntfy_topic, "title": shorten(page.title, 250),
            "message": shorten(page.body, 4000),
            "priority": 5 if page.tokens else 3,
            "tags": ["rotating_light"] if page.tokens else ["white_check_mark"]}
        if page.tokens:
            body["actions"] = [
                {"action": "http", "label": LABELS[action],
                 "url": f"{self.server.url}/{me.ntfy_reply_topic}", "method": "POST",
                 "headers": self._auth(me.ntfy_token), "body": token, "clear": True}
                for action, token in page.tokens.items() if action in LABELS][:3]
        return await self._publish(body, self.channel(page.contact))

    async def _publish(self, body: dict[str, object], channel: str) -> ChannelResult:
        started = time.monotonic()
        try:
            async with self._http().post(self.server.url + "/", json=body,
                                         timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT)) as r:
                await r.read()
                ok = r.status < 300
                return result(channel, "ntfy", started, ok,
                              "delivered" if ok else f"HTTP {r.status}", status=r.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return result(channel, "ntfy", started, False,
                          f"failed ({type(exc).__name__})")

    async def confirm(self, answer: Answer, text: str) -> None:
        if answer.contact is None or answer.contact not in self.contacts:
            return
        me = self.contacts[answer.contact]
        res = await self._publish({"topic": me.ntfy_topic, "title": "onwatch",
                                   "message": text, "tags": ["white_check_mark"]},
                                  self.channel(answer.contact))
        if not res.ok:
            log.warning("reply_confirm_failed", channel="ntfy", contact=answer.contact,
                        detail=res.detail)

    async def listen(self, emit: Emit) -> None:
        topics = ",".join(sorted(self._by_reply_topic))
        params = {"since": self._since} if self._since else {}
        timeout = aiohttp.ClientTimeout(total=None, connect=SEND_TIMEOUT,
                                        sock_read=KEEPALIVE_GRACE)
        async with self._http().get(f"{self.server.url}/{topics}/json", params=params,
                                    timeout=timeout, read_bufsize=MAX_LINE) as r:
            if r.status != 200:
                raise ConnectionError(f"ntfy answered HTTP {r.status} to the subscription"
                                      + (" (check [replies.ntfy] token and the topics' access)"
                                         if r.status in (401, 403) else ""))
            if self._since is None:
                # From now on, a reconnect resumes where this stream was.
                self._since = str(int(time.time()))
            log.info("reply_channel_connected", channel="ntfy", topics=len(self._by_reply_topic))
            while True:
                try:
                    line = await r.content.readline()
                except ValueError:  # a line longer than the buffer: not ntfy
                    raise ConnectionError("ntfy sent a line longer than 64 KiB") from None
                if not line:
                    raise ConnectionError("ntfy closed the stream")
                await self._line(line, emit)

    async def _line(self, line: bytes, emit: Emit) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("reply_malformed", channel="ntfy", detail="not JSON")
            return
        if not isinstance(event, dict) or event.get("event") != "message":
            return  # open, keepalive, poll_request
        if isinstance(event.get("id"), str):
            self._since = event["id"]
        topic, text = event.get("topic"), event.get("message")
        if not isinstance(topic, str) or not isinstance(text, str):
            log.warning("reply_malformed", channel="ntfy", detail="message without topic/text")
            return
        contact = self._by_reply_topic.get(topic)
        await emit(Answer("ntfy", contact, text.strip(), f"ntfy topic {topic}",
                          context=event.get("id")))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await asyncio.sleep(0)
