"""The reply-channel supervisor: sends answerable pages, hears answers, acts through the engine.

Outbound, the outbox hands every message for a contact with reply channels to
`deliver()`: a page of an open incident goes out with signed tokens (buttons
on ntfy and Telegram, a reply token by mail, a receipt on Pushover), anything
else as a plain notice. The tokens are `agent.links` tokens, the very ones the
acknowledgement links use: HMAC over (incident, recipient, action, expiry).

Inbound, each channel's listener runs under `_supervise`, which starts it
again after it ends or fails, waiting 1 s, 2 s, 4 s ... at most
`BACKOFF_CAP`, and from 1 s again once a connection held for a minute.

Every answer is authenticated twice before anything changes: the channel maps
the service's identity (chat and user id, sender address, reply topic, user
key) to a contact, or to nobody (ignored, logged); then the token must verify
and be made for that same contact. Forged, altered, expired or foreign
answers change nothing and are logged (`reply_refused`), and the person is
told so on the channel. An accepted answer ends in an engine call
(`acknowledge` or `resolve`, `via` the channel), which writes the timeline;
the confirmation goes back on the same channel, and the engine's own
"acknowledged" notice tells everybody else who was paged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter

from agent import links
from agent.config_replies import Replies
from agent.engine import ActionError, Engine
from agent.incidents import State
from agent.store.records import OutboxMessage
from agent.vocab import Via
from notifiers.channels import ChannelResult, Message
from notifiers.messages import PAGING_EVENTS
from notifiers.replies import Answer, Channel, Page
from notifiers.replies.imap import Email
from notifiers.replies.ntfy import Ntfy
from notifiers.replies.pushover import Pushover
from notifiers.replies.telegram import Telegram

log = structlog.get_logger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0
STEADY_AFTER = 60.0
#: The tokens each channel's pages carry.
ACTIONS = {"ntfy": ("ack", "resolve"), "telegram": ("ack", "resolve"), "email": ("reply",),
           "pushover": ("ack",)}
#: `onwatch test-notify`: test answers carry this incident number (no incident has it).
TEST_INCIDENT = 0


def build_channels(replies: Replies) -> list[Channel]:
    contacts = dict(replies.contacts)
    out: list[Channel] = []
    if replies.ntfy is not None and any(c.ntfy_topic for c in contacts.values()):
        out.append(Ntfy(replies.ntfy, contacts))
    if replies.telegram is not None and any(c.telegram_chat_id is not None
                                            for c in contacts.values()):
        out.append(Telegram(replies.telegram, contacts))
    if replies.email is not None and any(c.email for c in contacts.values()):
        out.append(Email(replies.email, contacts))
    if replies.pushover is not None and any(c.pushover_user for c in contacts.values()):
        out.append(Pushover(replies.pushover, contacts))
    return out


def backoff(failures: int) -> float:
    return float(min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


class ReplyHub:
    def __init__(self, replies: Replies, key: bytes, clock: Callable[[], float], *,
                 engine: Engine | None = None, registry: CollectorRegistry | None = None,
                 observer: Callable[[Answer, str], None] | None = None) -> None:
        self.key = key
        self.clock = clock
        self.engine = engine
        self.channels = build_channels(replies)
        #: Told of every answer and what came of it (`onwatch test-notify` prints them).
        self.observer = observer
        self._tasks: list[asyncio.Task[None]] = []
        self.answers = Counter("onwatch_replies_total", "Answers heard on reply channels, by "
                               "outcome (accepted, no_effect, refused, ignored)",
                               ["channel", "result"], registry=registry)
        for ch in self.channels:
            if isinstance(ch, Pushover):
                ch.wanted = self._still_open

    # -- outbound --------------------------------------------------------------------

    def serves(self, contact: str) -> bool:
        return any(ch.serves(contact) for ch in self.channels)

    def tokens(self, incident_id: int, contact: str, actions: Sequence[str]) -> dict[str, str]:
        expires = int(self.clock() + links.DEFAULT_TTL)
        episode = self._episode(incident_id) or 0
        return {a: links.sign(self.key, links.Claims(incident_id, contact, a, expires, episode))
                for a in actions}

    def _episode(self, incident_id: int) -> int | None:
        """The incident's current episode (a reopened one has a new one); None: unknown."""
        if self.engine is None or incident_id == TEST_INCIDENT:
            return None
        engine = self.engine
        inc = engine.read_or_none(lambda: engine.store.incident(incident_id))
        return None if inc is None else links.episode_of(inc.opened_at)

    def _answerable(self, msgs: Sequence[OutboxMessage]) -> int | None:
        """The incident a single page is about while it still waits for somebody."""
        if len(msgs) != 1 or msgs[0].event not in PAGING_EVENTS or msgs[0].incident_id is None:
            return None
        if self.engine is None:
            return msgs[0].incident_id
        engine, wanted = self.engine, msgs[0].incident_id
        # A database down: the page goes out from memory, without the buttons.
        inc = engine.read_or_none(lambda: engine.store.incident(wanted))
        return inc.id if inc is not None and inc.state is State.OPEN else None

    async def deliver(self, contact: str, msgs: Sequence[OutboxMessage], content: Message,
                      skip: frozenset[str] = frozenset()) -> list[ChannelResult]:
        incident = self._answerable(msgs)
        out = []
        for ch in self.channels:
            if not ch.serves(contact) or _channel_name(ch, contact) in skip:
                continue
            tokens = {} if incident is None else self.tokens(incident, contact, ACTIONS[ch.name])
            out.append(await ch.send(Page(contact, content.title, content.body,
                                          msgs[0].incident_id if msgs else None, tokens)))
        return out

    def _still_open(self, incident_id: int) -> bool:
        if self.engine is None:
            return True
        inc = self.engine.store.incident(incident_id)
        return inc is not None and inc.state is State.OPEN

    # -- inbound ---------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(ch), name=f"reply-{ch.name}")
                       for ch in self.channels]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for ch in self.channels:
            await ch.close()

    async def _supervise(self, ch: Channel) -> None:
        failures = 0
        while True:
            # A standby does not listen: two pollers of one bot or mailbox take each
            # other's answers (Telegram refuses the second one). It starts on taking over.
            while self.engine is not None and not self.engine.leading:  # noqa: ASYNC110
                await asyncio.sleep(1.0)  # leadership is looked at each second too
            started = time.monotonic()
            try:
                await ch.listen(self.handle)
                why = "the connection ended"
            except (ConnectionError, OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug in a listener: logged, and it comes back
                why = f"{type(exc).__name__}: {exc}"
                log.exception("reply_channel_error", channel=ch.name)
            failures = 1 if time.monotonic() - started > STEADY_AFTER else failures + 1
            delay = backoff(failures)
            log.warning("reply_channel_down", channel=ch.name, reason=why[:200],
                        retry_in_s=delay)
            await asyncio.sleep(delay)

    def _refuse(self, answer: Answer, why: str) -> str:
        self.answers.labels(answer.channel, "refused").inc()
        log.warning("reply_refused", channel=answer.channel, contact=answer.contact,
                    who=answer.who, reason=why)
        return f"onwatch did not accept this answer: {why}."

    async def handle(self, answer: Answer) -> None:
        """Authenticate one answer, act on it through the engine, confirm on its channel."""
        if answer.contact is None:
            self.answers.labels(answer.channel, "ignored").inc()
            log.warning("reply_unknown_sender", channel=answer.channel, who=answer.who)
            return
        text = self._act(answer)
        if self.observer is not None:
            self.observer(answer, text)
        channel = next((c for c in self.channels if c.name == answer.channel), None)
        if channel is not None:
            await channel.confirm(answer, text)

    def _act(self, answer: Answer) -> str:
        contact = answer.contact or ""
        try:
            claims = links.verify(self.key, answer.token, self.clock())
        except links.LinkError as exc:
            return self._refuse(answer, "its token " + str(exc).removeprefix("this link "))
        if claims.recipient != contact:
            return self._refuse(answer, "its token was made for somebody else")
        action = answer.action if claims.action == "reply" else claims.action
        if action not in ("ack", "resolve"):
            return self._refuse(answer, 'it was not understood (reply "ack" or '
                                        '"resolve: <cause>")')
        current = self._episode(claims.incident_id)
        if current is not None and claims.episode != current:
            return self._refuse(answer, "the incident reopened after this page was sent")
        if claims.incident_id == TEST_INCIDENT:
            self.answers.labels(answer.channel, "accepted").inc()
            log.info("reply_test_received", channel=answer.channel, contact=contact,
                     who=answer.who, action=action)
            return f"onwatch heard your test answer ({action}) on {answer.channel}."
        return self._engine_call(answer, claims.incident_id, action)

    def _engine_call(self, answer: Answer, incident_id: int, action: str) -> str:
        contact = answer.contact or ""
        if self.engine is None:
            return self._refuse(answer, "this is a test; the agent itself acts on pages")
        try:
            if action == "ack":
                self.engine.acknowledge(incident_id, by=contact, via=Via(answer.channel))
                text = f"#{incident_id} acknowledged by {contact}, escalation stopped"
            else:
                self.engine.resolve(incident_id, by=contact,
                                    cause=answer.cause or f"resolved from {answer.channel}",
                                    fix="", via=Via(answer.channel))
                text = f"#{incident_id} resolved by {contact}"
            # Who exactly, as the service knows them (a device, a user name, an address).
            self.engine.note(incident_id, by=contact,
                             text=f"answered {action} on {answer.channel} as {answer.who}",
                             via=Via(answer.channel))
        except ActionError as exc:
            self.answers.labels(answer.channel, "no_effect").inc()
            log.warning("reply_no_effect", channel=answer.channel, contact=contact,
                        incident=incident_id, action=action, reason=str(exc))
            return f"Nothing changed: {exc}."
        self.answers.labels(answer.channel, "accepted").inc()
        log.warning("reply_accepted", channel=answer.channel, contact=contact,
                    incident=incident_id, action=action, who=answer.who,
                    handled_s=round(time.time() - answer.received_at, 3))
        return text


def _channel_name(ch: Channel, contact: str) -> str:
    name = getattr(ch, "channel", None)
    return str(name(contact)) if callable(name) else ch.name
