"""Telegram: pages with inline buttons; the agent long-polls getUpdates for the presses.

Bot API calls used (all `POST <api_url>/bot<token>/<method>` with a JSON body,
answers `{"ok": true, "result": ...}`):
- `sendMessage` `{chat_id, text, reply_markup: {inline_keyboard: [[button ...]]}}`,
  each button `{text, callback_data}` where callback_data (at most 64 bytes) is
  the short form of the signed token (`agent.links.short`): the recipient is
  left out and put back from the chat the press came from;
- `getUpdates` `{offset, timeout, allowed_updates: ["callback_query"]}`: long
  polling; `offset` = last update_id + 1 confirms everything before it;
- `answerCallbackQuery` `{callback_query_id, text}`: stops the button's spinner
  and shows the outcome.

Identity: the press must come from a configured chat (`message.chat.id`) and
from one of that contact's users (`from.id`). An update that is not an object,
has no callback data, or comes from an unknown chat is logged and confirmed
away (its offset passes), never retried forever. `api_url` may point at a
self-hosted Bot API server.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import structlog

from agent.config_replies import ContactReply, TelegramBot
from notifiers.channels import ChannelResult
from notifiers.replies import LABELS, Answer, Emit, Page, result, shorten

log = structlog.get_logger(__name__)

SEND_TIMEOUT = 30.0


class TelegramError(Exception):
    def __init__(self, method: str, status: int | None, detail: str) -> None:
        super().__init__(f"Telegram {method}: {detail}")
        self.status = status


class Telegram:
    name = "telegram"

    def __init__(self, bot: TelegramBot, contacts: dict[str, ContactReply]) -> None:
        self.bot = bot
        self.contacts = {n: c for n, c in contacts.items() if c.telegram_chat_id is not None}
        self._by_chat = {c.telegram_chat_id: n for n, c in self.contacts.items()}
        self._offset: int | None = None
        self._session: aiohttp.ClientSession | None = None

    def serves(self, contact: str) -> bool:
        return contact in self.contacts

    def channel(self, contact: str) -> str:
        return f"telegram-reply://{self.bot.api_url.split('://', 1)[-1]}/chat"

    async def call(self, method: str, body: dict[str, Any], timeout: float = SEND_TIMEOUT
                   ) -> Any:
        """One Bot API call; its `result`, or TelegramError (status None: no answer)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        url = f"{self.bot.api_url}/bot{self.bot.token}/{method}"
        try:
            async with self._session.post(url, json=body,
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                try:
                    data = await r.json(content_type=None)
                except ValueError:
                    raise TelegramError(method, r.status, f"HTTP {r.status}, not JSON") from None
                if not isinstance(data, dict) or not data.get("ok"):
                    why = data.get("description") if isinstance(data, dict) else None
                    raise TelegramError(method, r.status, f"HTTP {r.status} {why or ''}".strip())
                return data.get("result")
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The URL holds the bot token: never let the exception text out.
            raise TelegramError(method, None, f"no answer ({type(exc).__name__})") from None

    async def send(self, page: Page) -> ChannelResult:
        chat = self.contacts[page.contact].telegram_chat_id
        body: dict[str, Any] = {"chat_id": chat,
                                "text": shorten(f"{page.title}\n\n{page.body}", 4096)}
        if page.tokens:
            from agent.links import short

            body["reply_markup"] = {"inline_keyboard": [[
                {"text": LABELS[a], "callback_data": short(t)}
                for a, t in page.tokens.items() if a in LABELS]]}
        started = time.monotonic()
        try:
            await self.call("sendMessage", body)
        except TelegramError as exc:
            return result(self.channel(page.contact), "telegram", started, False,
                          f"HTTP {exc.status}" if exc.status else "failed (no answer)",
                          status=exc.status)
        return result(self.channel(page.contact), "telegram", started, True, "delivered")

    async def confirm(self, answer: Answer, text: str) -> None:
        query_id, chat = answer.context if isinstance(answer.context, tuple) else (None, None)
        try:
            if query_id is not None:
                await self.call("answerCallbackQuery",
                                {"callback_query_id": query_id, "text": shorten(text, 200)})
            if chat is not None and answer.contact is not None:
                await self.call("sendMessage", {"chat_id": chat, "text": text})
        except TelegramError as exc:
            log.warning("reply_confirm_failed", channel="telegram", contact=answer.contact,
                        detail=str(exc))

    async def listen(self, emit: Emit) -> None:
        log.info("reply_channel_connected", channel="telegram", chats=len(self._by_chat))
        while True:
            body: dict[str, Any] = {"timeout": int(self.bot.poll_timeout),
                                    "allowed_updates": ["callback_query"]}
            if self._offset is not None:
                body["offset"] = self._offset
            updates = await self.call("getUpdates", body, timeout=self.bot.poll_timeout + 15)
            if not isinstance(updates, list):
                raise TelegramError("getUpdates", 200, "result is not a list")
            for update in updates:
                await self._update(update, emit)

    async def _update(self, update: Any, emit: Emit) -> None:
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            log.warning("reply_malformed", channel="telegram", detail="update without update_id")
            return
        self._offset = max(self._offset or 0, update["update_id"] + 1)
        query = update.get("callback_query")
        if not isinstance(query, dict):
            return
        sender, message = _obj(query.get("from")), _obj(query.get("message"))
        chat = _obj(message.get("chat")).get("id")
        data, user = query.get("data"), sender.get("id")
        if not isinstance(data, str) or not isinstance(query.get("id"), str):
            log.warning("reply_malformed", channel="telegram", detail="callback without data")
            return
        contact = self._by_chat.get(chat)
        if contact is not None and user not in self.contacts[contact].telegram_user_ids:
            log.warning("reply_identity_mismatch", channel="telegram", contact=contact,
                        user=user)
            contact = None
        token = data
        if contact is not None:
            from agent.links import LinkError, expand

            try:
                token = expand(data, contact)
            except LinkError:
                token = data
        name = sender.get("username")
        who = f"telegram user {user}" + (f" (@{name})" if isinstance(name, str) else "")
        await emit(Answer("telegram", contact, token, who, context=(query["id"], chat)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else (malformed updates)."""
    return value if isinstance(value, dict) else {}
