"""Local stand-ins for ntfy, the Telegram Bot API and Pushover, on 127.0.0.1 port 0.

No real server of these services can run here, so each is an aiohttp app that
implements exactly the documented endpoints the agent uses, answering with the
documents' example payload shapes:
- ntfy: `POST /` (publish as JSON), `POST /<topic>` (what an `http` action
  button sends), `GET /<topic>[,<topic>...]/json` (the JSON stream: an "open"
  event, then one message object a line, `since=` to resume), with optional
  per-topic access tokens like a server with `auth-default-access: deny-all`;
- Telegram: `/bot<token>/sendMessage`, `/bot<token>/getUpdates` (long poll,
  `offset` confirms), `/bot<token>/answerCallbackQuery`;
- Pushover: `/1/messages.json`, `/1/receipts/<r>.json`, `/1/receipts/<r>/cancel.json`.

Tests drive them like the people on the other side: `Ntfy.press()` makes the
HTTP request an action button describes, `Telegram.press()` queues the
callback_query update a tap produces, `Pushover.acknowledge()` marks a
receipt as a person's phone would. `drop()`/`inject()` cut streams and send
malformed data.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class _Server:
    runner: web.AppRunner | None = None
    port: int = 0

    async def _serve(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()


@dataclass
class Ntfy(_Server):
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: topic -> the only token allowed to publish there (absent: anyone).
    write_tokens: dict[str, str] = field(default_factory=dict)
    #: The token subscriptions must present (None: any).
    read_token: str | None = None
    keepalive_s: float = 45.0
    subscriptions: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _queues: list[tuple[set[str], asyncio.Queue[bytes | None]]] = field(default_factory=list)

    async def start(self) -> Ntfy:
        app = web.Application()
        app.router.add_post("/", self._publish_json)
        app.router.add_get("/{topics}/json", self._subscribe)
        app.router.add_post("/{topic}", self._publish_raw)
        await self._serve(app)
        return self

    def _token(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    def _store(self, topic: str, fields: dict[str, Any]) -> dict[str, Any]:
        msg = {"id": f"m{next(self._ids):09d}", "time": int(time.time()), "event": "message",
               "topic": topic, **fields}
        self.messages.append(msg)
        line = json.dumps(msg).encode() + b"\n"
        for topics, queue in self._queues:
            if topic in topics:
                queue.put_nowait(line)
        return msg

    async def _publish(self, request: web.Request, topic: str, fields: dict[str, Any]
                       ) -> web.Response:
        need = self.write_tokens.get(topic)
        if need is not None and self._token(request) != need:
            return web.json_response({"code": 40301, "http": 403, "error": "forbidden"},
                                     status=403)
        return web.json_response(self._store(topic, fields))

    async def _publish_json(self, request: web.Request) -> web.Response:
        body = await request.json()
        topic = body.pop("topic")
        return await self._publish(request, topic, body)

    async def _publish_raw(self, request: web.Request) -> web.Response:
        return await self._publish(request, request.match_info["topic"],
                                   {"message": await request.text()})

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        if self.read_token is not None and self._token(request) != self.read_token:
            return web.json_response({"code": 40101, "http": 401, "error": "unauthorized"},
                                     status=401)
        topics = set(request.match_info["topics"].split(","))
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        self.subscriptions += 1
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        since = request.query.get("since")
        await resp.write(json.dumps({"id": "open1", "time": int(time.time()), "event": "open",
                                     "topic": ",".join(sorted(topics))}).encode() + b"\n")
        for m in self.messages:  # resume: what came after `since` (an id or a unix time)
            if since and m["topic"] in topics and (m["id"] > since if since.startswith("m")
                                                   else m["time"] >= int(since)):
                await resp.write(json.dumps(m).encode() + b"\n")
        entry = (topics, queue)
        self._queues.append(entry)
        try:
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), self.keepalive_s)
                except TimeoutError:
                    line = json.dumps({"id": "ka", "time": int(time.time()),
                                       "event": "keepalive", "topic": "x"}).encode() + b"\n"
                if line is None:
                    break
                await resp.write(line)
        finally:
            self._queues.remove(entry)
        return resp

    def drop(self) -> None:
        """Cut every subscription mid-stream."""
        for _, queue in self._queues:
            queue.put_nowait(None)

    def inject(self, raw: bytes) -> None:
        for _, queue in self._queues:
            queue.put_nowait(raw)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["topic"] == topic]

    async def press(self, message: dict[str, Any], label: str) -> int:
        """Do what the phone does when the button `label` of `message` is tapped."""
        action = next(a for a in message["actions"] if a["label"] == label)
        assert action["action"] == "http"
        async with aiohttp.ClientSession() as s, s.request(
                action.get("method", "POST"), action["url"], headers=action.get("headers", {}),
                data=action.get("body", "")) as r:
            return r.status


@dataclass
class Telegram(_Server):
    token: str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
    sent: list[dict[str, Any]] = field(default_factory=list)
    answered: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    _updates: list[Any] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10000))
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Telegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._call)
        await self._serve(app)
        return self

    async def _call(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        body = await request.json()
        method = request.match_info["method"]
        if method == "sendMessage":
            msg = {"message_id": len(self.sent) + 1, "date": int(time.time()),
                   "chat": {"id": body["chat_id"], "type": "private"}, "text": body["text"],
                   **({"reply_markup": body["reply_markup"]} if "reply_markup" in body else {})}
            self.sent.append(msg)
            return web.json_response({"ok": True, "result": msg})
        if method == "answerCallbackQuery":
            self.answered.append(body)
            return web.json_response({"ok": True, "result": True})
        if method == "getUpdates":
            return await self._get_updates(body)
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"},
                                 status=404)

    def _pending(self, offset: int) -> list[Any]:
        return [u for u in self._updates
                if not isinstance(u, dict) or u.get("update_id", 0) >= offset]

    async def _get_updates(self, body: dict[str, Any]) -> web.Response:
        self.polls += 1
        offset = int(body.get("offset", 0))
        # Confirmed updates are forgotten, as the documents say.
        self._updates = self._pending(offset)
        deadline = time.monotonic() + float(body.get("timeout", 0))
        while not self._pending(offset) and time.monotonic() < deadline:
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        got = self._pending(offset)
        self._updates = [u for u in self._updates if isinstance(u, dict)]  # junk: sent once
        return web.json_response({"ok": True, "result": got})

    def _push(self, update: Any) -> None:
        self._updates.append(update)
        self._new.set()

    def press(self, message: dict[str, Any], label: str, *, user_id: int,
              username: str = "alice", data: str | None = None) -> None:
        """The update a tap on the button `label` of `message` produces."""
        rows = message["reply_markup"]["inline_keyboard"]
        button = next(b for row in rows for b in row if b["text"] == label)
        self._push({"update_id": next(self._ids), "callback_query": {
            "id": secrets.token_hex(8), "chat_instance": "-4325862",
            "from": {"id": user_id, "is_bot": False, "first_name": username.title(),
                     "username": username, "language_code": "en"},
            "message": {"message_id": message["message_id"], "date": message["date"],
                        "chat": message["chat"], "text": message["text"]},
            "data": button["callback_data"] if data is None else data}})

    def inject(self, update: Any) -> None:
        self._push(update)

    def next_id(self) -> int:
        return next(self._ids)


@dataclass
class Pushover(_Server):
    app_token: str = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
    sent: list[dict[str, str]] = field(default_factory=list)
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    receipt_polls: int = 0

    async def start(self) -> Pushover:
        app = web.Application()
        app.router.add_post("/1/messages.json", self._message)
        app.router.add_get("/1/receipts/{receipt}.json", self._receipt)
        app.router.add_post("/1/receipts/{receipt}/cancel.json", self._cancel)
        await self._serve(app)
        return self

    async def _message(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        if form.get("token") != self.app_token:
            return web.json_response({"token": "invalid", "errors": ["application token is "
                                      "invalid"], "status": 0, "request": "x"}, status=400)
        self.sent.append({k: str(v) for k, v in form.items()})
        out: dict[str, Any] = {"status": 1, "request": secrets.token_hex(16)}
        if form.get("priority") == "2":
            receipt = secrets.token_urlsafe(22)[:30]
            self.receipts[receipt] = {"status": 1, "acknowledged": 0, "acknowledged_at": 0,
                                      "acknowledged_by": "", "acknowledged_by_device": "",
                                      "last_delivered_at": int(time.time()), "expired": 0,
                                      "expires_at": int(time.time()) + int(form["expire"]),
                                      "called_back": 0, "called_back_at": 0,
                                      "request": out["request"]}
            out["receipt"] = receipt
        return web.json_response(out)

    async def _receipt(self, request: web.Request) -> web.Response:
        self.receipt_polls += 1
        got = self.receipts.get(request.match_info["receipt"])
        if request.query.get("token") != self.app_token or got is None:
            return web.json_response({"status": 0, "errors": ["receipt not found"]},
                                     status=404)
        return web.json_response(got)

    async def _cancel(self, request: web.Request) -> web.Response:
        self.cancelled.append(request.match_info["receipt"])
        return web.json_response({"status": 1, "request": secrets.token_hex(16)})

    def acknowledge(self, receipt: str, user: str, device: str = "iphone") -> None:
        self.receipts[receipt] |= {"acknowledged": 1, "acknowledged_at": int(time.time()),
                                   "acknowledged_by": user, "acknowledged_by_device": device}
