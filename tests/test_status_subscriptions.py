"""Subscriptions against a hostile caller, their signed links, and the subscriber mailer
against a real aiosmtpd (accepting, refusing a recipient, gone)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from agent import links
from agent.config_notify import DeliveryPolicy
from agent.config_status import EmailConfig
from agent.links import LinkError
from agent.status import subscriptions as subs
from agent.status.mailer import Mailer
from agent.status.subscriptions import SubscribeError, Subscriptions
from agent.store.status import StatusStore
from tests.pg import Opener
from tests.status_env import mails as received
from tests.support import Mailbox

KEY = b"k" * 32
NOW = 1_800_000_000.0


def email(port: int = 25, **kw: object) -> EmailConfig:
    return EmailConfig("127.0.0.1", port, "status@shop.example", **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(store_opener: Opener) -> Iterator[StatusStore]:
    """The status tables on both stores (tests/pg.py)."""
    yield StatusStore(store_opener())


def service(store: StatusStore, **kw: object) -> Subscriptions:
    s = Subscriptions(store, email(**kw), KEY, "Corner Shop")
    s.public_url = "https://status.example"
    return s


def mails(store: StatusStore) -> int:
    return sum(store.mail_counts().values())


@pytest.mark.parametrize("address", ["", "no-at-sign", "a@b", "x@y.com\r\nBcc: v@z.com",
                                     "a" * 250 + "@example.com", "a b@example.com"])
def test_bad_addresses_are_refused_with_a_clear_message(store: StatusStore, address: str
                                                        ) -> None:
    with pytest.raises(SubscribeError, match=r"like name@example\.com"):
        service(store).subscribe(address, NOW)
    assert mails(store) == 0


def test_one_confirmation_per_address_per_cooldown(store: StatusStore) -> None:
    s = service(store, cooldown=600.0)
    assert s.subscribe("Carol@Example.ORG", NOW)
    assert store.subscriber(address="Carol@example.org") is not None  # domain lower-cased
    for k in range(50):  # a hostile caller hammering one victim's address
        assert not s.subscribe("Carol@example.org", NOW + k)
    assert mails(store) == 1
    assert s.subscribe("Carol@example.org", NOW + 601)
    assert mails(store) == 2


def test_pending_subscriptions_are_capped_and_expire(store: StatusStore) -> None:
    s = service(store, pending_max=3)
    for i in range(3):
        s.subscribe(f"p{i}@example.org", NOW)
    with pytest.raises(SubscribeError, match="try again later") as exc:
        s.subscribe("p9@example.org", NOW)
    assert exc.value.status == 503 and store.pending_count() == 3
    # Unconfirmed ones are forgotten when their link expires: room again.
    assert s.subscribe("p9@example.org", NOW + subs.CONFIRM_TTL + 1)
    assert store.pending_count() == 1


def test_links_confirm_and_unsubscribe_and_forgeries_change_nothing(store: StatusStore) -> None:
    s = service(store)
    s.subscribe("dave@example.org", NOW)
    sub = store.subscriber(address="dave@example.org")
    assert sub is not None
    confirm = subs.sign(KEY, sub, "confirm", int(NOW + 100))
    unsub = subs.sign(KEY, sub, "unsubscribe", int(NOW + 100))
    forged = [
        subs.sign(b"x" * 32, sub, "confirm", int(NOW + 100)),  # another key
        links.seal(KEY, f"sub|{sub.id + 1}|{sub.nonce}|confirm|{int(NOW + 100)}".encode())[:-3]
        + confirm[-3:],  # another subscriber under the old MAC
        unsub,  # the wrong action
        subs.sign(KEY, sub, "confirm", int(NOW - 1)),  # expired
        links.sign(KEY, links.Claims(sub.id, "dave", "ack", int(NOW + 100), 0)),  # an ack link
        "garbage", "",
    ]
    for token in forged:
        with pytest.raises(LinkError):
            s.confirm(token, NOW)
    assert store.subscriber(sid=sub.id).state == "pending"  # type: ignore[union-attr]
    with pytest.raises(LinkError):  # a subscription link is no acknowledgement either
        links.verify(KEY, confirm, NOW)
    assert s.confirm(confirm, NOW) and not s.confirm(confirm, NOW)
    assert s.unsubscribe(unsub, NOW) and not s.unsubscribe(unsub, NOW)
    # Subscribing again makes a new nonce: the old links are void.
    s.subscribe("dave@example.org", NOW + 1000)
    with pytest.raises(LinkError, match="no longer valid"):
        s.confirm(confirm, NOW)


async def test_mailer_sends_with_headers_retries_and_gives_up(
        store: StatusStore, smtp_servers: Callable[..., Awaitable[int]], listeners: Any) -> None:
    inbox = Mailbox(known={"ann@example.org", "bob@example.org"})  # gone@ gets a 550
    port = await smtp_servers(inbox)
    clock = [NOW]
    s = Subscriptions(store, email(port), KEY, "Corner Shop")
    s.public_url = "https://status.example"
    for who in ("ann@example.org", "gone@example.org"):
        s.subscribe(who, NOW)
    mailer = Mailer(store, email(port, max_per_minute=1), DeliveryPolicy(retry_cap=4.0,
                    deadline=30.0, send_timeout=5.0), asyncio.Event(), lambda: clock[0])
    await mailer.send(store.due_mail(NOW, 10))
    assert [m["To"] for m in received(inbox)] == ["ann@example.org"]
    msg = received(inbox)[0]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<https://status.example/unsubscribe/")
    assert store.mail_counts() == {"delivered": 1, "failed": 1}  # a 5xx is permanent
    assert mailer._budget(NOW) == 0  # one a minute: the next waits
    await listeners.close()  # the relay goes away
    s.subscribe("bob@example.org", NOW)
    await mailer.send(store.due_mail(NOW, 10))  # the relay is gone: retried later
    (due,) = store.due_mail(NOW + 100, 10)
    assert due.attempts == 1 and due.next_attempt_at == NOW + 2.0
    clock[0] = NOW + 40  # past the deadline
    await mailer.send([due])
    assert store.mail_counts()["failed"] == 2
    with store.store.tx():  # a week on, what was done with is gone; nothing due is
        store.prune(NOW + 8 * 86400)
    assert store.mail_counts() == {}
