"""E-mail subscriptions: double opt-in, signed links, one-click unsubscribe, bounded.

A link carries (subscriber id, the subscription's random nonce, action,
expiry) under the agent's HMAC key, sealed the way acknowledgement links
are (agent/links.py), in a body of its own shape ("sub|..."), so an
acknowledgement token is never a subscription token or the reverse. A forged
or altered link, one for an older subscription of the same address (new
nonce) or an expired one changes nothing.

The form is open to anyone, so it is bounded against a hostile caller:
- the answer is the same whether or not the address is known (nobody learns
  who subscribes);
- one confirmation mail per address per `cooldown` (nobody can mail-bomb a
  victim through us);
- at most `pending_max` unconfirmed subscriptions at once, forgotten when
  their link expires (the store cannot be filled).
Addresses are private: they are never logged, shown or put in a link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import structlog

from agent import links
from agent.config_status import EmailConfig
from agent.links import LinkError
from agent.store.status import StatusStore, Subscriber

log = structlog.get_logger(__name__)

CONFIRM_TTL = 2 * 86400
UNSUBSCRIBE_TTL = 400 * 86400
ACTIONS = ("confirm", "unsubscribe")
ADDRESS_MAX = 254
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


class SubscribeError(Exception):
    """The request cannot be taken; the message is safe to show to the person."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class LinkClaims:
    subscriber_id: int
    nonce: str
    action: str
    expires: int


def sign(key: bytes, sub: Subscriber, action: str, expires: int) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return links.seal(key, f"sub|{sub.id}|{sub.nonce}|{action}|{expires}".encode())


def verify(key: bytes, token: str, action: str, now: float) -> LinkClaims:
    body = links.unseal(key, token)
    try:
        tag, sid, nonce, got, expires = body.decode().split("|")
        claims = LinkClaims(int(sid), nonce, got, int(expires))
    except ValueError:
        raise LinkError("this link is malformed") from None
    if tag != "sub" or claims.action != action:
        raise LinkError("this link is for something else")
    if now > claims.expires:
        raise LinkError("this link has expired; subscribe again on the status page")
    return claims


def unsubscribe_url(base: str, key: bytes, sub: Subscriber, now: float) -> str:
    return f"{base}/unsubscribe/{sign(key, sub, 'unsubscribe', int(now + UNSUBSCRIBE_TTL))}"


def normalise(address: str) -> str:
    """The address as stored: trimmed, domain lower-cased; SubscribeError if it is not one."""
    address = address.strip()
    if len(address) > ADDRESS_MAX or not _ADDRESS.fullmatch(address):
        raise SubscribeError("Please enter an e-mail address like name@example.com.")
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


class Subscriptions:
    def __init__(self, store: StatusStore, email: EmailConfig | None, key: bytes,
                 title: str) -> None:
        self.store = store
        self.email = email
        self.key = key
        self.title = title
        self.public_url = ""

    def subscribe(self, address: str, now: float) -> bool:
        """Take a subscription; True when a confirmation mail was queued (never shown)."""
        if self.email is None:
            raise SubscribeError("E-mail updates are not offered here; use the feed.", 404)
        address = normalise(address)
        with self.store.store.tx():
            self.store.expire_pending(now - CONFIRM_TTL)
            current = self.store.subscriber(address=address)
            if current is not None and current.state == "confirmed":
                return False
            if current is not None and current.last_mail_at is not None \
                    and now - current.last_mail_at < self.email.cooldown:
                return False
            if (current is None or current.state != "pending") \
                    and self.store.pending_count() >= self.email.pending_max:
                raise SubscribeError("Too many subscriptions are waiting for confirmation "
                                     "right now; please try again later.", 503)
            sub = self.store.subscribe(address, now)
            self._confirmation(sub, now)
            self.store.touch(sub.id, now)
        log.info("subscription_requested", subscriber=sub.id)
        return True

    def _confirmation(self, sub: Subscriber, now: float) -> None:
        token = sign(self.key, sub, "confirm", int(now + CONFIRM_TTL))
        unsub = unsubscribe_url(self.public_url, self.key, sub, now)
        body = (f"Somebody, hopefully you, asked to receive {self.title} status updates at "
                "this address.\n\n"
                f"To confirm, open this link and press the button:\n"
                f"{self.public_url}/subscribe/confirm/{token}\n\n"
                "If it was not you, ignore this message: nothing more will be sent.\n\n"
                f"Unsubscribe (one click): {unsub}\n")
        self.store.enqueue_mail(sid=sub.id, kind="confirm",
                                subject=f"[{self.title}] Confirm your subscription",
                                body=body, unsubscribe=unsub, now=now)

    def _current(self, token: str, action: str, now: float) -> Subscriber:
        claims = verify(self.key, token, action, now)
        sub = self.store.subscriber(sid=claims.subscriber_id)
        if sub is None or sub.nonce != claims.nonce:
            raise LinkError("this link is no longer valid; subscribe again on the status page")
        return sub

    def check(self, token: str, action: str, now: float) -> Subscriber:
        """The subscriber a link is for (LinkError if refused); changes nothing."""
        return self._current(token, action, now)

    def confirm(self, token: str, now: float) -> bool:
        """True when this confirmed the subscription (False: it already was)."""
        sub = self._current(token, "confirm", now)
        if sub.state == "confirmed":
            return False
        if sub.state != "pending":
            raise LinkError("this subscription was cancelled; subscribe again on the status "
                            "page")
        with self.store.store.tx():
            self.store.set_state(sub.id, "confirmed", now)
        log.info("subscription_confirmed", subscriber=sub.id)
        return True

    def unsubscribe(self, token: str, now: float) -> bool:
        """True when this ended the subscription (False: it already had ended)."""
        sub = self._current(token, "unsubscribe", now)
        if sub.state == "unsubscribed":
            return False
        with self.store.store.tx():
            self.store.set_state(sub.id, "unsubscribed", now)
        log.info("subscription_ended", subscriber=sub.id)
        return True
