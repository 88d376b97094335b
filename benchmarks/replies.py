"""Reply channels with the real daemon: time from answer to acknowledgement, and idle CPU.

    python3 benchmarks/replies.py [--rounds 5] [--idle 30] [--baseline]

One `onwatch run` with every reply channel for one contact: ntfy and Telegram
and Pushover against the local stand-ins of tests/reply_services.py, e-mail
through aiosmtpd into a real dovecot (skipped, and said so, without dovecot).
For each channel, `--rounds` times: an incident is declared through the API,
the page arrives on every channel, the answer is given on this one (the
ntfy button's HTTP request, a Telegram callback, an IMAP APPEND of a reply, a
Pushover receipt marked acknowledged) and the time until the incident is
acknowledged in the agent's API is taken. Targets: <= 5 s for ntfy and
Telegram, <= the poll interval (here 30 s, the default) for e-mail; Pushover
is bounded by its receipt poll (at least 5 s, Pushover's rule; 5 s here).

Then the agent sits idle with all of them connected (ntfy stream, Telegram
long poll, IMAP IDLE) for `--idle` seconds, and its CPU time over that
window (psutil: user + system, all threads) is the idle figure; target
< 0.5 % of one core. `--baseline` measures the same agent without reply
channels for comparison. Everything is on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reply_services import Ntfy, Pushover, Telegram  # noqa: E402
from tests.support import AgentProcess, start_agent, wait_for  # noqa: E402

EMAIL_POLL = 30.0
TARGETS = {"ntfy": 5.0, "telegram": 5.0, "email": EMAIL_POLL, "pushover": 5.0 + 1.0}
ALICE_MAIL = "alice@example.net"


def config(state: Path, ntfy: Ntfy, tg: Telegram, po: Pushover, mail: str, replies: bool
           ) -> str:
    reply = ('ntfy_topic = "alice-pages"\nntfy_reply_topic = "alice-replies"\n'
             'ntfy_token = "tk_alice"\ntelegram_chat_id = 4242\n'
             'pushover_user = "uAlice"\n' + (f'email = "{ALICE_MAIL}"\n' if mail else ""))
    services = f"""
[replies.ntfy]
url = "{ntfy.url}"
token = "tk_agent"
[replies.telegram]
bot_token = "{tg.token}"
api_url = "{tg.url}"
[replies.pushover]
app_token = "{po.app_token}"
api_url = "{po.url}"
poll_interval = "5s"
{mail}
"""
    contact = (f"[contacts.reply]\n{reply}" if replies
               else 'urls = ["json://127.0.0.1:9/nowhere"]\n')
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
{services if replies else ""}
[[contacts]]
name = "alice"
{contact}
[notifications]
storm_threshold = 1000   # one page after another is the point here, not an alert storm

[[policies]]
name = "chain"
ack_timeout = "off"
[[policies.steps]]
notify = ["alice"]
"""


async def api(agent: AgentProcess, state: Path, method: str, path: str,
              body: dict[str, Any] | None = None) -> Any:
    token = (state / "api.token").read_text().strip()
    async with aiohttp.ClientSession() as s, s.request(
            method, agent.base_url + path, json=body,
            headers={"Authorization": f"Bearer {token}"}) as r:
        return await r.json()


async def answer(channel: str, n: int, svc: dict[str, Any]) -> None:
    """Wait for incident #n's page on `channel`, then answer it there."""
    title = f"incident #{n}"

    async def page() -> Any:
        if channel == "ntfy":
            return [m for m in svc["ntfy"].on("alice-pages")
                    if m.get("actions") and m.get("title", "").endswith(title)]
        if channel == "telegram":
            return [m for m in svc["tg"].sent if "reply_markup" in m and title in m["text"]]
        if channel == "pushover":
            return [m for m in svc["po"].sent if m.get("priority") == "2"
                    and m["title"].endswith(title)]
        return [m for m in svc["relay"].received if str(m["Subject"]).endswith(title)]

    found = (await wait_for(page, 15, f"the page of #{n} on {channel}"))[0]
    if channel == "ntfy":
        await svc["ntfy"].press(found, "Acknowledge")
    elif channel == "telegram":
        svc["tg"].press(found, "Acknowledge", user_id=4242)
    elif channel == "pushover":
        index = [m for m in svc["po"].sent if m.get("priority") == "2"].index(found)
        svc["po"].acknowledge(list(svc["po"].receipts)[index], "uAlice")
    else:
        from tests.test_replies_email import append

        reply = EmailMessage()
        reply["From"], reply["To"] = ALICE_MAIL, "onwatch@example.com"
        reply["Subject"], reply["In-Reply-To"] = "Re: page", str(found["Message-ID"])
        reply.set_content("ack")
        await asyncio.to_thread(append, svc["dovecot"], reply.as_bytes())


async def latencies(agent: AgentProcess, state: Path, channels: list[str], rounds: int,
                    svc: dict[str, Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {c: [] for c in channels}
    for channel in channels:
        for _ in range(rounds):
            inc = await api(agent, state, "POST", "/api/v1/incidents",
                            {"title": f"bench {channel}", "severity": "critical",
                             "policy": "chain"})
            n = inc["id"]
            await answer(channel, n, svc)
            started = time.monotonic()

            async def acked(n: int = n) -> bool:
                got = await api(agent, state, "GET", f"/api/v1/incidents/{n}")
                return bool(got.get("state") == "acknowledged")

            await wait_for(acked, TARGETS[channel] + 30, f"#{n} acknowledged", every=0.01)
            out[channel].append(time.monotonic() - started)
    return out


async def idle_cpu(agent: AgentProcess, seconds: float) -> float:
    """Percent of one core the agent used over `seconds` of doing nothing."""
    proc = psutil.Process(agent.proc.pid)
    await asyncio.sleep(3.0)  # let start-up and the last answers settle
    before, t0 = proc.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds)
    after, t1 = proc.cpu_times(), time.monotonic()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / (t1 - t0)


async def run(args: argparse.Namespace, tmp: Path, stack: contextlib.AsyncExitStack) -> int:
    ntfy = await Ntfy(write_tokens={"alice-replies": "tk_alice"}, read_token="tk_agent").start()
    tg, po = await Telegram().start(), await Pushover().start()
    for s in (ntfy, tg, po):
        stack.push_async_callback(s.close)
    svc: dict[str, Any] = {"ntfy": ntfy, "tg": tg, "po": po}
    mail = await _mail(svc, tmp, stack)
    channels = ["ntfy", "telegram", *(["email"] if mail else []), "pushover"]
    state = tmp / "state"
    agent = await start_agent(config(state, ntfy, tg, po, mail, True), tmp)
    stack.push_async_callback(agent.stop)
    await wait_for(lambda: _true(ntfy.subscriptions >= 1 and tg.polls >= 1), 15, "connected")
    if mail:
        await wait_for(lambda: _true([e for e in agent.events("reply_channel_connected")
                                      if e.get("channel") == "email"]), 15, "IMAP connected")
    got = await latencies(agent, state, channels, args.rounds, svc)
    failed = 0
    print("answer -> acknowledged (s)       median    max   target")
    for channel, times in got.items():
        ok = max(times) <= TARGETS[channel]
        failed += not ok
        print(f"  {channel:<10} n={len(times):<3}          {statistics.median(times):6.3f} "
              f"{max(times):6.3f}   <= {TARGETS[channel]:g}s  {'PASS' if ok else 'FAIL'}")
    if not mail:
        print("  email      skipped: dovecot is not installed (apt-get install dovecot-imapd)")
    cpu = await idle_cpu(agent, args.idle)
    print(f"idle CPU, all reply channels connected, {args.idle:g}s: {cpu:.3f} % of a core   "
          f"target < 0.5 %  {'PASS' if cpu < 0.5 else 'FAIL'}")
    if args.baseline:
        (tmp / "b").mkdir()
        base = await start_agent(config(tmp / "b" / "state", ntfy, tg, po, "", False),
                                 tmp / "b")
        stack.push_async_callback(base.stop)
        print(f"idle CPU, no reply channels (baseline): {await idle_cpu(base, args.idle):.3f} %")
    return 1 if failed or cpu >= 0.5 else 0


async def _mail(svc: dict[str, Any], tmp: Path, stack: contextlib.AsyncExitStack) -> str:
    """The [replies.email] section, with dovecot and aiosmtpd running; "" without dovecot."""
    import os
    import ssl

    import trustme
    from aiosmtpd.smtp import SMTP

    from tests.dovecot import DOVECOT, running_dovecot
    from tests.test_replies_email import Relay

    if not os.access(DOVECOT, os.X_OK):
        return ""
    ca = trustme.CA()
    d = stack.enter_context(running_dovecot(ca))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    relay = Relay(d)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(relay, hostname="relay.test", tls_context=context), "127.0.0.1", 0)
    stack.callback(server.close)
    svc["relay"], svc["dovecot"] = relay, d
    (tmp / "imap.pw").write_text(d.password)
    port = server.sockets[0].getsockname()[1]
    return (f'[replies.email]\naddress = "onwatch@example.com"\n'
            f'poll_interval = "{EMAIL_POLL:g}s"\n'
            f'[replies.email.imap]\nhost = "127.0.0.1"\nport = {d.imap}\n'
            f'ca_file = "{d.ca_file}"\nusername = "{d.user}"\n'
            f'password_file = "{tmp / "imap.pw"}"\n'
            f'[replies.email.smtp]\nhost = "127.0.0.1"\nport = {port}\n'
            f'ca_file = "{d.ca_file}"\n')


async def _true(value: Any) -> Any:
    return value


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="answers per channel (default 5)")
    p.add_argument("--idle", type=float, default=30.0, help="idle window, seconds (default 30)")
    p.add_argument("--baseline", action="store_true", help="also an agent without replies")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="onwatch-replies-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            return await run(args, Path(tmp), stack)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
