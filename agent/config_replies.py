"""The reply half of the config: `[replies.*]` (the services) and `[contacts.reply]` (who).

A reply channel is a service the agent reaches outbound only and listens on for
a person's answer to a page: ntfy (action buttons publish to a reply topic the
agent subscribes to), Telegram (inline buttons; the agent long-polls
getUpdates), e-mail (the person replies "ack" or "resolve: cause"; the agent
reads the mailbox over IMAP) and Pushover emergency priority (the agent polls
the receipt). The service is configured once under `[replies.<service>]`; each
contact names their own identity on it under `[contacts.reply]`:

    [replies.telegram]
    bot_token = "${TELEGRAM_BOT_TOKEN}"
    [[contacts]]
    name = "alice"
    [contacts.reply]
    telegram_chat_id = 123456789

Called by `agent.config.parse` with the shared error list, so problems read
`contacts[0] "alice": reply: telegram_chat_id: needs [replies.telegram] ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agent.fields import Section, show
from checks._mail import Endpoint, parse_endpoint
from checks.smtp import parse_address, parse_server

#: What the agent's own topics and the Bot API base default to.
NTFY_DEFAULT = "https://ntfy.sh"
TELEGRAM_DEFAULT = "https://api.telegram.org"
PUSHOVER_DEFAULT = "https://api.pushover.net"
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True)
class NtfyServer:
    url: str
    #: The agent's access token: publishes pages, reads the reply topics.
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TelegramBot:
    token: str = field(repr=False)
    api_url: str = TELEGRAM_DEFAULT
    #: getUpdates long-poll timeout (Telegram holds the request this long when idle).
    poll_timeout: float = 25.0


@dataclass(frozen=True)
class Mailbox:
    """The agent's own mailbox: pages go out through `smtp` from `address`; the replies
    arrive in `mailbox` at `imap` and are moved to `processed` once handled."""

    address: str
    imap: Endpoint
    smtp: Endpoint
    helo: str
    mailbox: str = "INBOX"
    processed: str = "onwatch-processed"
    #: How often the mailbox is read when the server offers no IDLE (and at most how
    #: long an IDLE waits before the agent checks again).
    poll_interval: float = 30.0


@dataclass(frozen=True)
class PushoverApp:
    token: str = field(repr=False)
    api_url: str = PUSHOVER_DEFAULT
    #: Emergency priority: Pushover repeats the alert every `retry` until acknowledged
    #: or `expire` has passed (its limits: retry >= 30 s, expire <= 3 h).
    retry: float = 60.0
    expire: float = 3600.0
    #: Receipt polling interval (Pushover asks for no more than one a 5 s).
    poll_interval: float = 10.0


@dataclass(frozen=True)
class ContactReply:
    ntfy_topic: str | None = None
    ntfy_reply_topic: str | None = None
    #: The contact's own token, put into the page's buttons: on an ntfy server with
    #: access control only it may publish to the reply topic.
    ntfy_token: str | None = field(default=None, repr=False)
    telegram_chat_id: int | None = None
    #: Telegram users whose button presses count (default: the chat id, a private chat).
    telegram_user_ids: tuple[int, ...] = ()
    email: str | None = None
    pushover_user: str | None = field(default=None, repr=False)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(name for name, on in (
            ("ntfy", self.ntfy_topic), ("telegram", self.telegram_chat_id is not None),
            ("email", self.email), ("pushover", self.pushover_user)) if on)


@dataclass(frozen=True)
class Replies:
    ntfy: NtfyServer | None = None
    telegram: TelegramBot | None = None
    email: Mailbox | None = None
    pushover: PushoverApp | None = None
    #: Contact name -> its reply identities (only contacts that have any).
    contacts: Mapping[str, ContactReply] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def any(self) -> bool:
        return bool(self.contacts)


def parse(sec: Section, contact_sections: Mapping[str, Section]) -> Replies:
    ntfy = _ntfy(sec.sub("ntfy")) if sec.has("ntfy") else None
    telegram = _telegram(sec.sub("telegram")) if sec.has("telegram") else None
    email = _mailbox(sec.sub("email")) if sec.has("email") else None
    pushover = _pushover(sec.sub("pushover")) if sec.has("pushover") else None
    sec.finish()
    services = {"ntfy": ntfy, "telegram": telegram, "email": email, "pushover": pushover}
    contacts = {}
    for name, csec in contact_sections.items():
        reply = contact(csec, services)
        if reply.channels:
            contacts[name] = reply
    _unique(contacts, contact_sections)
    return Replies(ntfy, telegram, email, pushover, MappingProxyType(contacts))


def _ntfy(sec: Section | None) -> NtfyServer | None:
    if sec is None:
        return None
    out = NtfyServer(sec.url("url", ("http", "https"), NTFY_DEFAULT).rstrip("/"),
                     sec.secret("token"))
    sec.finish()
    return out


def _telegram(sec: Section | None) -> TelegramBot | None:
    if sec is None:
        return None
    token = sec.secret("bot_token")
    if token is None:
        sec.error("bot_token", "is required (the token @BotFather gave; bot_token_file works too)")
    out = TelegramBot(token or "", sec.url("api_url", ("http", "https"),
                                           TELEGRAM_DEFAULT).rstrip("/"),
                      sec.duration("poll_timeout", 25.0))
    sec.finish()
    return out


def _mailbox(sec: Section | None) -> Mailbox | None:
    if sec is None:
        return None
    address = parse_address(sec, "address", "") or ""
    if not address:
        sec.error("address", "is required: the agent's mail address (replies go to it)")
    imap_sec, smtp_sec = sec.sub("imap"), sec.sub("smtp")
    if imap_sec is None or smtp_sec is None:
        return None
    imap = parse_endpoint(imap_sec, 143, 993)
    if imap.username is None:
        imap_sec.error("username", "is required: the agent logs into its mailbox")
    imap_sec.finish()
    smtp, helo = parse_server(smtp_sec)
    smtp_sec.finish()
    out = Mailbox(address, imap, smtp, helo, sec.string("mailbox", "INBOX"),
                  sec.string("processed_mailbox", "onwatch-processed"),
                  sec.duration("poll_interval", 30.0))
    sec.finish()
    return out


def _pushover(sec: Section | None) -> PushoverApp | None:
    if sec is None:
        return None
    token = sec.secret("app_token")
    if token is None:
        sec.error("app_token", "is required (your Pushover application's API token)")
    retry, expire = sec.duration("retry", 60.0), sec.duration("expire", 3600.0)
    if retry < 30:
        sec.error("retry", "Pushover needs at least 30s between emergency repeats")
    if expire > 10800:
        sec.error("expire", "Pushover stops emergency repeats after 3h at most")
    out = PushoverApp(token or "", sec.url("api_url", ("http", "https"),
                                           PUSHOVER_DEFAULT).rstrip("/"),
                      retry, expire, sec.duration("poll_interval", 10.0))
    if out.poll_interval < 5:
        sec.error("poll_interval", "Pushover asks for no more than one receipt poll a 5s")
    sec.finish()
    return out


def contact(sec: Section, services: Mapping[str, object]) -> ContactReply:
    """One contact's `[contacts.reply]`; each identity needs its service configured."""

    def needs(key: str, service: str) -> None:
        if sec.has(key) and services.get(service) is None:
            sec.error(key, f"needs [replies.{service}] (the service this contact answers on)")

    for key, service in (("ntfy_topic", "ntfy"), ("telegram_chat_id", "telegram"),
                         ("email", "email"), ("pushover_user", "pushover")):
        needs(key, service)
    topic = _topic(sec, "ntfy_topic")
    reply_topic = _topic(sec, "ntfy_reply_topic")
    ntfy_token = sec.secret("ntfy_token")
    if topic and not reply_topic:
        sec.error("ntfy_reply_topic", "is required with ntfy_topic: the buttons publish there")
    if reply_topic and reply_topic == topic:
        sec.error("ntfy_reply_topic", "must differ from ntfy_topic (pages are not answers)")
    chat = sec.integer("telegram_chat_id", 0) if sec.has("telegram_chat_id") else None
    users = _ints(sec, chat)
    email = parse_address(sec, "email", None)
    pushover = sec.secret("pushover_user")
    sec.finish()
    return ContactReply(topic, reply_topic, ntfy_token, chat, users, email.lower()
                        if email else None, pushover)


def _topic(sec: Section, key: str) -> str | None:
    value = sec.optional_string(key)
    if value and (len(value) > 64 or not set(value) <= _TOPIC_CHARS):
        sec.error(key, f"must be 1-64 letters, digits, '-' or '_' (an ntfy topic), "
                       f"got {show(value)}")
    return value


def _ints(sec: Section, chat: int | None) -> tuple[int, ...]:
    raw = sec.value("telegram_user_ids")
    if raw is None:
        return (chat,) if chat is not None else ()
    if not isinstance(raw, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in raw) or not raw:
        sec.error("telegram_user_ids", f"must be a list of Telegram user ids, got {show(raw)}")
        return ()
    return tuple(raw)


def _unique(contacts: Mapping[str, ContactReply], sections: Mapping[str, Section]) -> None:
    """One identity answers for one contact only: else an answer could not be attributed."""
    seen: dict[tuple[str, object], str] = {}
    for name, reply in contacts.items():
        for key, value in (("ntfy_reply_topic", reply.ntfy_reply_topic),
                           ("telegram_chat_id", reply.telegram_chat_id),
                           ("email", reply.email), ("pushover_user", reply.pushover_user)):
            if value is None:
                continue
            other = seen.setdefault((key, value), name)
            if other != name:
                sections[name].error(key, f"is also contact {show(other)}'s; an answer there "
                                          "could not tell who gave it")
