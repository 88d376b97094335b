"""`onwatch test-notify CONTACT`, reply half: a test page with buttons, and the answer.

Sends a test page through every reply channel of the contact (tokens for the
test incident #0, which no incident has), listens on those channels the way
the agent does, and prints every answer that arrives and what the agent would
make of it, until each channel has answered or `wait` has passed. Nothing is
written anywhere: the store is not opened, and where the agent's link key
cannot be read a throw-away one is used (the answers still round-trip, since
this process made the tokens).

While the agent runs, it listens on the same channels and may take the answer
first (Telegram lets one poller have the updates, the agent moves handled mail
aside); it then confirms on the channel and logs `reply_test_received`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable

from agent import links
from agent.config import Config
from agent.replies import ACTIONS, TEST_INCIDENT, ReplyHub
from notifiers.replies import Answer, Page

#: Listeners get this long to connect before the page goes out.
SETTLE = 1.0


def _key(cfg: Config) -> bytes:
    try:
        return links.load_or_create_key(cfg.agent.state_dir) \
            if (cfg.agent.state_dir / "link.key").exists() else secrets.token_bytes(32)
    except OSError:
        return secrets.token_bytes(32)


async def run(cfg: Config, contact: str, wait: float, say: Callable[[str], None]) -> bool:
    """True when every reply channel of `contact` delivered the test and heard an answer."""
    heard: dict[str, Answer] = {}
    changed = asyncio.Event()

    def observe(answer: Answer, outcome: str) -> None:
        say(f"answer on {answer.channel} from {answer.who} "
            f"(contact {answer.contact or 'unknown'}): {outcome}")
        if answer.contact == contact and "did not accept" not in outcome:
            heard.setdefault(answer.channel, answer)
            changed.set()

    hub = ReplyHub(cfg.replies, _key(cfg), time.time, observer=observe)
    channels = [ch for ch in hub.channels if ch.serves(contact)]
    hub.start()
    try:
        await asyncio.sleep(SETTLE)
        sent = []
        for ch in channels:
            tokens = hub.tokens(TEST_INCIDENT, contact, ACTIONS[ch.name])
            res = await ch.send(Page(contact, "[TEST] onwatch reply path",
                                     f"A test from onwatch to {contact}: press Acknowledge "
                                     "(or reply \"ack\" to this e-mail) to test the way back.",
                                     TEST_INCIDENT, tokens))
            say(f"{'ok  ' if res.ok else 'FAIL'} {res.channel}  {res.detail} "
                f"in {res.elapsed_s:.2f}s (reply channel)")
            if res.ok:
                sent.append(ch.name)
        if not sent:
            return False
        say(f"waiting up to {wait:g}s for the answer on {', '.join(sent)} ...")
        deadline = time.monotonic() + wait
        while not set(sent) <= set(heard) and (left := deadline - time.monotonic()) > 0:
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        missing = [n for n in sent if n not in heard]
        if missing:
            say(f"no answer on {', '.join(missing)} within {wait:g}s (if the agent is "
                "running it may have taken it: look for reply_test_received in its log)")
        return not missing and len(sent) == len(channels)
    finally:
        await asyncio.sleep(0.5)  # let a confirmation still being sent go out
        await hub.stop()
