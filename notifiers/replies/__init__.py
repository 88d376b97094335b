"""Reply channels: pages that can be answered, and the listeners that hear the answers.

Every channel reaches its service outbound only (the business's router needs
no port opened) and speaks the service's documented HTTP or IMAP API itself,
over plain aiohttp or the project's own IMAP/SMTP client: the SDKs
(python-telegram-bot, python-ntfy, aioimaplib) would each bring a framework,
their own retry and logging policy and a dependency tree, for the four or five
calls used here.

A channel:
- `send(page)` delivers a page (with buttons when `page.tokens` has any) or a
  notice, and returns a `ChannelResult` like the Apprise channels do;
- `listen(emit)` runs until cancelled, calling `emit(Answer)` for every answer
  it hears; it returns or raises when its connection ends, and the
  supervisor (agent/replies.py) starts it again after a capped backoff;
- `confirm(answer, text)` tells the person, on the same channel, what came of
  their answer.

Channels authenticate nothing themselves beyond mapping the service's identity
(chat id, sender address, reply topic, user key) to a contact: the token check
and every change are the supervisor's, through the engine.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from notifiers.channels import ChannelResult

#: Button labels, in the order they are shown.
LABELS: Mapping[str, str] = {"ack": "Acknowledge", "resolve": "Resolve"}
#: Bodies read from a service are bounded (a misbehaving server cannot fill memory).
MAX_LINE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Page:
    contact: str
    title: str
    body: str
    incident_id: int | None = None
    #: action -> signed token; empty: a notice without buttons.
    tokens: Mapping[str, str] = field(default_factory=dict)
    #: Pushover: a page is sent with emergency priority, a notice is not.
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    channel: str
    #: The contact the answering identity belongs to; None: nobody configured.
    contact: str | None
    token: str
    #: The identity as the service gave it ("telegram user 42 (@alice)"), for the log.
    who: str
    #: E-mail says what it wants in words; buttons leave it to the token's action.
    action: str | None = None
    cause: str = ""
    #: Where the confirmation goes (a chat and callback id, a Message-ID ...).
    context: Any = None
    received_at: float = field(default_factory=time.time)


Emit = Callable[[Answer], Awaitable[None]]


class Channel(Protocol):
    name: str

    def serves(self, contact: str) -> bool: ...

    async def send(self, page: Page) -> ChannelResult: ...

    async def listen(self, emit: Emit) -> None: ...

    async def confirm(self, answer: Answer, text: str) -> None: ...

    async def close(self) -> None: ...


def result(channel: str, kind: str, started: float, ok: bool, detail: str, *,
           status: int | None = None) -> ChannelResult:
    """A `ChannelResult` with the outbox's retry rules: a 4xx (not 408/429) is permanent,
    no answer at all is a network failure."""
    permanent = status is not None and 400 <= status < 500 and status not in (408, 429)
    return ChannelResult(channel, kind, ok, detail, time.monotonic() - started,
                         permanent=permanent, network=status is None and not ok)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
