"""The status page end to end, with a real `onwatch run`, a real SMTP server (aiosmtpd)
and a config full of secrets, internal hosts and reasons.

- The public listener serves the allow-list only: every private route is 404 there.
- Subscription: subscribe, a forged confirmation changes nothing, confirm (POST), receive
  the opening notice, a person's public update (`onwatch update ID --public`) and the
  closing notice, each with RFC 8058 headers; a forged unsubscribe changes nothing; the
  one-click unsubscribe ends it, and the next outage's notice reaches only the other
  subscriber.
- Leak test: every public response (page, incident pages, feed, JSON, badges) and every
  subscriber e-mail of the scenario contains none of the secrets, hosts, ports, reasons,
  check, contact, policy or tag names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path

from tests import status_env as env
from tests.status_env import Target, body, fetch, link, mails
from tests.support import AgentProcess, Mailbox, Receiver, onwatch, query, start_agent, wait_for

PUBLIC_PATHS = ["/", "/status", "/incidents", "/status.json", "/feed.atom",
                "/badge/online-shop.svg", "/badge/card-payments-in-store.svg"]
PRIVATE = [("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/inbox"), ("POST", "/inbox"),
           ("POST", "/inbox/alice"), ("GET", "/api/v1/incidents"), ("POST", "/api/v1/incidents"),
           ("GET", "/api/v1/incidents/1"), ("POST", "/api/v1/incidents/1/ack"),
           ("POST", "/api/v1/incidents/1/public"), ("GET", "/api/v1/maintenance"),
           ("POST", "/api/v1/maintenance"), ("DELETE", "/api/v1/maintenance/1"),
           ("POST", "/api/v1/intake/alertmanager"), ("POST", "/api/v1/intake/webhook/x")]


def public_base(state: Path) -> str:
    return "http://" + (state / "public.addr").read_text().strip()


def subscriber_state(state: Path, address: str) -> str | None:
    rows = query(state, "SELECT state FROM subscribers WHERE address = ?", address)
    return str(rows[0][0]) if rows else None


def forge(url: str) -> str:
    """The same link with one character of its MAC changed (not the last: base64's last
    character of 16 bytes carries padding bits, so some changes there decode the same)."""
    c = url[-5]
    return url[:-5] + ("A" if c != "A" else "B") + url[-4:]


async def collect(base: str, seen: list[str]) -> None:
    for path in PUBLIC_PATHS:
        status, text, _ = await fetch(base + path)
        assert status == 200, (path, status)
        seen.append(text)
    _, doc, _ = await fetch(base + "/status.json")
    for key in {i["id"] for i in json.loads(doc)["incidents"]}:
        status, text, _ = await fetch(f"{base}/incidents/{key}")
        assert status == 200
        seen.append(text)


async def mail_for(inbox: Mailbox, address: str, count: int, what: str
                   ) -> list[EmailMessage]:
    async def got() -> bool:
        return len(mails(inbox, address)) >= count

    await wait_for(got, 20, what)
    return mails(inbox, address)


async def test_public_listener_subscriptions_and_no_leaks(
        tmp_path: Path, smtp_servers: Callable[..., Awaitable[int]]) -> None:
    inbox, target, receiver = Mailbox(), Target(), await Receiver().start()
    smtp_port = await smtp_servers(inbox)
    await target.start()
    state = tmp_path / "state"
    agent = await start_agent(env.config(state, target, receiver_url=receiver.url,
                                         smtp_port=smtp_port, pos_port=smtp_port), tmp_path)
    seen: list[str] = []
    try:
        await _scenario(agent, state, target, inbox, seen)
        forbidden = env.secrets(target, receiver.port)
        for text in seen:
            assert not env.leaks(text, forbidden), (env.leaks(text, forbidden), text[:3000])
        for msg in mails(inbox):
            text = f"{msg['Subject']}\n{msg['From']}\n{body(msg)}"
            assert not env.leaks(text, forbidden), (env.leaks(text, forbidden), text)
        # Subscriber addresses are private: never in the agent's logs.
        assert not any("example.org" in line for line in agent.raw_log)
    finally:
        code = await agent.stop()
        await receiver.close()
        await target.close()
    assert code == 0, agent.raw_log[-20:]


async def _scenario(agent: AgentProcess, state: Path, target: Target, inbox: Mailbox,
                    seen: list[str]) -> None:
    pub = public_base(state)

    async def up() -> bool:
        return await agent.metric(f'onwatch_check_up{{check="{env.CHECK}"}}') == 1.0

    await wait_for(up, 15, "the check to be up")
    for method, path in PRIVATE:
        status, _, _ = await fetch(pub + path, method, json={"text": "x"})
        assert status == 404, (method, path, status)
    assert (await fetch(agent.base_url + "/metrics"))[0] == 200
    # What the outside needs is there: ack links (a forged one refused), heartbeats, the logo.
    assert (await fetch(pub + "/ack/not-a-token"))[0] == 403
    status, text, _ = await fetch(pub + "/heartbeat/no-such-check")
    assert status == 404 and "no heartbeat check" in text
    status, _, headers = await fetch(pub + "/logo")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    await collect(pub, seen)

    # Subscribe two people; carol will leave, dave stays.
    for who in ("carol@example.org", "dave@example.org"):
        status, text, _ = await fetch(pub + "/subscribe", "POST", data={"email": who})
        assert status == 200 and "Check your inbox" in text and who not in text
    carol, dave = (await mail_for(inbox, "carol@example.org", 1, "carol's confirmation"))[0], \
        (await mail_for(inbox, "dave@example.org", 1, "dave's confirmation"))[0]
    assert carol["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert carol["List-Unsubscribe"].startswith("<http")
    confirm = link(carol, "/subscribe/confirm/")
    assert (await fetch(forge(confirm), "POST"))[0] == 403
    assert (await fetch(confirm))[0] == 200  # GET shows the button, changes nothing
    assert subscriber_state(state, "carol@example.org") == "pending"
    for msg in (carol, dave):
        status, text, _ = await fetch(link(msg, "/subscribe/confirm/"), "POST")
        assert status == 200 and "Subscribed" in text
    assert subscriber_state(state, "carol@example.org") == "confirmed"

    await target.stop()  # the outage: the default notice, to the page and to both
    opening = (await mail_for(inbox, "carol@example.org", 2, "the opening notice"))[-1]
    assert "investigating a problem with Online shop" in body(opening)
    assert "Investigating: Online shop" in opening["Subject"]
    await collect(pub, seen)
    _, page, _ = await fetch(pub + "/")
    assert "Major outage" in page and "We are investigating a problem with Online shop" in page

    done = await asyncio.to_thread(onwatch, "update", "1", "--public",
                                   "We found the cause and are fixing it now.", "--by", "sam",
                                   "--config", str(agent.config))
    assert done.returncode == 0, done.stderr + done.stdout
    update = (await mail_for(inbox, "carol@example.org", 3, "the public update"))[-1]
    assert "We found the cause and are fixing it now." in body(update)
    await collect(pub, seen)

    await target.start()
    closing = (await mail_for(inbox, "carol@example.org", 4, "the closing notice"))[-1]
    assert "has been fixed" in body(closing)
    await collect(pub, seen)

    unsub = link(closing, "/unsubscribe/")
    assert unsub in closing["List-Unsubscribe"]
    assert (await fetch(forge(unsub), "POST", data={"List-Unsubscribe": "One-Click"}))[0] == 403
    assert subscriber_state(state, "carol@example.org") == "confirmed"
    status, text, _ = await fetch(unsub, "POST", data={"List-Unsubscribe": "One-Click"})
    assert status == 200 and "Unsubscribed" in text
    assert subscriber_state(state, "carol@example.org") == "unsubscribed"

    await target.stop()  # a second outage: dave hears of it, carol does not
    await mail_for(inbox, "dave@example.org", 5, "dave's second opening notice")
    assert len(mails(inbox, "carol@example.org")) == 4
    await collect(pub, seen)
