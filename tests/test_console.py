"""The console against a real `onwatch run`: signing in by magic link, sessions, CSRF and
origin checks, personal API tokens, and that whoever acts is the session's person.

The incident comes from a tcp check of a closed loopback port; the sign-in links arrive
at a local Receiver through Apprise's json://, as a person's pages would.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from agent.store.auth import AuthStore
from tests import console_env as env
from tests.console_env import Browser
from tests.pg import Opener
from tests.support import AgentProcess, Receiver, query, start_agent, wait_for


@dataclass
class Setup:
    agent: AgentProcess
    receiver: Receiver
    base: str
    state: Path


@pytest.fixture
async def running(tmp_path: Path, _no_agent_left_running: None) -> AsyncIterator[Setup]:
    # (Asking for conftest's safety net makes it tear down after this fixture, not before.)
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(env.config(state, receiver, env.closed_port()), tmp_path)
    try:
        await wait_for(lambda: query(state, "SELECT id FROM incidents"), 15, "an incident")
        yield Setup(agent, receiver, env.public_base(agent), state)
    finally:
        code = await agent.stop()
        await receiver.close()
        assert code == 0, agent.raw_log[-20:]


def timeline(state: Path, kind: str) -> list[tuple[str, str]]:
    return query(state, "SELECT actor, data FROM timeline WHERE kind = ?", kind)


async def test_pages_need_a_session_and_a_link_signs_in_once(running: Setup) -> None:
    b = Browser.open(running.base)
    try:
        for path in ("/console", "/console/incidents/1", "/console/checks", "/console/on-call",
                     "/console/maintenance", "/console/review", "/console/incidents/1/report"):
            status, _, headers = await b.get(path)
            assert status == 303 and headers["Location"] == "/console/sign-in", path
        status, _, _ = await b.post("/console/incidents/1/ack", {"csrf": "x"})
        assert status == 403
        # Signing in by e-mail address (from bob's URL) works like the name.
        await b.sign_in(running.receiver, "bob", name="Bob@Shop.example")
        status, html, headers = await b.get("/console")
        assert status == 200 and "#1 till is down" in html and "Sign out bob" in html
        assert "script" not in headers["Content-Security-Policy"]
        cookie = next(c for c in b.session.cookie_jar if c.key == "onwatch_session")
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"]
        assert cookie.value not in "".join(str(r) for r in query(running.state,
                                                                 "SELECT * FROM sessions"))
        # The link is used: neither its page nor its button works again.
        link = env.sign_in_links(running.receiver, "bob")[0].rsplit("/console", 1)[1]
        other = Browser.open(running.base)
        try:
            status, html, _ = await other.get("/console" + link)
            assert status == 410 and "used already" in html
            status, _, _ = await other.post("/console" + link,
                                            {"csrf": await other.csrf("/console/sign-in")})
            assert status == 410
            status, _, _ = await other.get("/console")
            assert status == 303
        finally:
            await other.close()
        # Sign-out ends the session in the store: the old cookie no longer works.
        status, _, _ = await b.post("/console/sign-out", {"csrf": await b.csrf("/console")})
        assert status == 303 and not query(running.state, "SELECT * FROM sessions")
        stale = Browser.open(running.base)
        stale.session.cookie_jar.update_cookies({"onwatch_session": cookie.value})
        try:
            assert (await stale.get("/console"))[0] == 303
        finally:
            await stale.close()
    finally:
        await b.close()


async def test_forged_and_expired_links_are_refused(running: Setup) -> None:
    b = Browser.open(running.base)
    try:
        csrf = await b.csrf("/console/sign-in")
        status, html, _ = await b.get("/console/link/forged-secret-that-was-never-issued")
        assert status == 403 and "not valid" in html
        status, _, _ = await b.post("/console/link/forged-secret-that-was-never-issued",
                                    {"csrf": csrf})
        assert status == 403
        # A link issued 11 minutes ago (written as the agent would, with its hash only).
        secret, now = "an-expired-link-secret-0123456789", time.time()
        db = sqlite3.connect(running.state / "onwatch.db")
        with db:
            db.execute("INSERT INTO signin_links VALUES (?,?,?,?,NULL)",
                       (hashlib.sha256(secret.encode()).hexdigest(), "alice", now - 660,
                        now - 60))
        db.close()
        status, html, _ = await b.get(f"/console/link/{secret}")
        assert status == 410 and "expired" in html
        status, _, _ = await b.post(f"/console/link/{secret}", {"csrf": csrf})
        assert status == 410
        assert not query(running.state, "SELECT * FROM sessions")
    finally:
        await b.close()


async def test_the_sign_in_form_tells_nobody_who_exists_and_limits_requests(
        running: Setup) -> None:
    b = Browser.open(running.base)
    try:
        csrf = await b.csrf("/console/sign-in")
        answers = set()
        for name in ("alice", "mallory", "alice", "alice", "alice"):
            status, html, _ = await b.post("/console/sign-in", {"name": name, "csrf": csrf})
            assert status == 200
            answers.add(html)
        assert len(answers) == 1  # the same page whoever was named
        await running.agent.event("signin_rate_limited")
        assert len(query(running.state, "SELECT * FROM signin_links")) == 3
        await wait_for(lambda: len(env.sign_in_links(running.receiver, "alice")) == 3, 10,
                       "three links delivered")
    finally:
        await b.close()


async def test_forms_without_csrf_or_from_another_origin_change_nothing(
        running: Setup) -> None:
    b = Browser.open(running.base)
    try:
        await b.sign_in(running.receiver, "alice")
        csrf = await b.csrf("/console/incidents/1")
        wrong = csrf[:-1] + ("1" if csrf[-1] == "0" else "0")
        refused = [
            await b.post("/console/incidents/1/ack", {}),  # no token
            await b.post("/console/incidents/1/ack", {"csrf": wrong}),
            await b.post("/console/incidents/1/ack", {"csrf": csrf},
                         origin="http://evil.example"),
            await b.post("/console/incidents/1/ack", {"csrf": csrf}, origin=None),
        ]
        assert [r[0] for r in refused] == [403] * 4
        assert query(running.state, "SELECT state FROM incidents WHERE id = 1") == [("open",)]
        assert not timeline(running.state, "acknowledged")
        status, _, _ = await b.post("/console/incidents/1/ack", {"csrf": csrf})
        assert status == 303
        assert query(running.state, "SELECT acknowledged_by FROM incidents") == [("alice",)]
    finally:
        await b.close()


async def test_the_actor_is_the_sessions_person_never_a_form_field(running: Setup) -> None:
    alice, bob = Browser.open(running.base), Browser.open(running.base)
    try:
        await alice.sign_in(running.receiver, "alice")
        await bob.sign_in(running.receiver, "bob")
        # bob's token does not pass in alice's session, nor alice's in bob's.
        bob_csrf = await bob.csrf("/console/incidents/1")
        status, _, _ = await alice.post("/console/incidents/1/note",
                                        {"csrf": bob_csrf, "text": "as bob?"})
        assert status == 403
        status, _, _ = await alice.post("/console/incidents/1/note", {
            "csrf": await alice.csrf("/console/incidents/1"), "text": "checking the till",
            "by": "bob", "actor": "bob", "person": "bob"})
        assert status == 303
        assert [(a, '{"via": "console"}') for a in ["alice"]] == timeline(running.state, "note")
        status, _, _ = await bob.post("/console/incidents/1/resolve", {
            "csrf": bob_csrf, "cause": "till cable unplugged", "fix": "plugged it back",
            "by": "alice"})
        assert status == 303
        assert query(running.state, "SELECT resolved_by FROM incidents") == [("bob",)]
    finally:
        await alice.close()
        await bob.close()


async def test_personal_tokens_act_as_their_person_and_revoked_ones_get_401(
        running: Setup) -> None:
    created = await running.agent.cli("token", "create", "--for", "alice", "--label", "phone")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("onw_") and token not in str(query(running.state,
                                                                "SELECT * FROM api_tokens"))
    api = running.agent.base_url + "/api/v1/incidents/1"
    async with aiohttp.ClientSession() as s:
        async with s.post(api + "/ack", json={"by": "mallory"},
                          headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200 and (await r.json())["acknowledged_by"] == "alice"
        assert timeline(running.state, "acknowledged") == [("alice", '{"via": "api"}')]
        listed = await running.agent.cli("token", "list")
        assert "alice" in listed.stdout and "phone" in listed.stdout and token not in \
            listed.stdout
        tid = listed.stdout.split()[0].lstrip("#")
        revoked = await running.agent.cli("token", "revoke", tid)
        assert revoked.returncode == 0, revoked.stderr
        async with s.post(api + "/notes", json={"text": "still me?"},
                          headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 401
        # The shared token still works for scripts, with the name they give.
        async with s.post(api + "/notes", json={"text": "from cron", "by": "nightly"},
                          headers={"Authorization": f"Bearer {env.API_TOKEN}"}) as r:
            assert r.status == 200
    assert timeline(running.state, "note") == [("nightly", '{"via": "api"}')]
    bad = await running.agent.cli("token", "create", "--for", "nobody")
    assert bad.returncode == 2 and "contact" in bad.stderr


def test_auth_store_links_expire_and_work_once(store_opener: Opener) -> None:
    store = store_opener()  # SQLite, then PostgreSQL
    auth = AuthStore(store)
    with store.tx():
        secret = auth.add_link("alice", 1000.0, 600.0)
    assert auth.link_state(secret, 1000.0) == ("alice", "ok")
    assert auth.consume(secret, 1601.0) is None  # expired
    assert auth.link_state(secret, 1601.0) == ("alice", "expired")
    assert auth.consume(secret, 1599.0) == "alice"
    assert auth.consume(secret, 1599.0) is None  # once
    assert auth.link_state(secret, 1599.0) == ("alice", "used")
    with store.tx():
        s = auth.add_session("alice", 1000.0, 3600.0)
    assert auth.session(s, 4599.0) == "alice" and auth.session(s, 4600.0) is None
    with store.tx():
        tid, token = auth.add_token("bob", 1000.0, "laptop")
    assert auth.token_person(token) == (tid, "bob") and auth.token_person(token + "x") is None
    with store.tx():
        assert auth.revoke_token(tid, 2000.0) and not auth.revoke_token(tid, 2001.0)
    assert auth.token_person(token) is None
    assert [(t.id, t.person, t.revoked_at) for t in auth.tokens()] == [(tid, "bob", 2000.0)]
    with store.tx():
        auth.prune(4600.0)
    assert not store.db.execute("SELECT * FROM sessions").fetchall()
    store.close()


async def test_escalate_snooze_public_update_maintenance_feeds_and_charts(
        running: Setup) -> None:
    from icalendar import Calendar

    b = Browser.open(running.base)
    try:
        await b.sign_in(running.receiver, "alice")
        csrf = await b.csrf("/console/incidents/1")
        pages_before = [m for m in running.receiver.messages if m["_path"] == "/bob"]
        # Step 2 (bob) is 10 minutes away; escalate now pages it at once.
        first = query(running.state, "SELECT contact FROM outbox WHERE event = 'page'")
        status, _, _ = await b.post("/console/incidents/1/escalate", {"csrf": csrf})
        assert status == 303
        rows = query(running.state, "SELECT contact FROM outbox WHERE event = 'page'")
        assert len(rows) > len(first) and ("bob",) in rows[len(first):]
        assert timeline(running.state, "escalate_requested")[0][0] == "alice"
        await wait_for(lambda: len([m for m in running.receiver.messages
                                    if m["_path"] == "/bob"]) > len(pages_before), 10,
                       "bob's page")
        status, _, _ = await b.post("/console/incidents/1/snooze", {"csrf": csrf,
                                                                   "minutes": "30"})
        assert status == 303 and timeline(running.state, "snoozed")[0][0] == "alice"
        status, html, _ = await b.get("/console")
        assert "snoozed until" in html
        status, _, _ = await b.post("/console/incidents/1/snooze", {"csrf": csrf,
                                                                   "minutes": "100000"})
        assert status == 400
        status, _, _ = await b.post("/console/incidents/1/public", {
            "csrf": csrf, "text": "Card payments are down; pay cash for now."})
        assert status == 303
        assert query(running.state, "SELECT by, text FROM public_notices WHERE kind = "
                     "'update'") == [("alice", "Card payments are down; pay cash for now.")]
        # The report's customer impact: the component, and the notices customers got.
        _, report, _ = await b.get("/console/incidents/1/report")
        impact = report.split("Customer impact", 1)[1].split("Escalation path", 1)[0]
        assert "Card payments" in impact and "pay cash for now" in impact
        assert "We are investigating a problem with Card payments" in impact
        # Maintenance: start one on the check, see it, end it.
        status, _, _ = await b.post("/console/maintenance", {
            "csrf": csrf, "check": "till", "for": "2h", "reason": "new till"})
        assert status == 303
        _, html, _ = await b.get("/console/maintenance")
        assert "new till" in html and "opened by alice" in html
        wid = query(running.state, "SELECT id FROM maintenance")[0][0]
        status, _, _ = await b.post(f"/console/maintenance/{wid}/end", {"csrf": csrf})
        assert status == 303 and "No window" in (await b.get("/console/maintenance"))[1]
        status, _, _ = await b.post("/console/maintenance", {"csrf": csrf, "check": "nope",
                                                            "for": "2h"})
        assert status == 400
        # The checks page draws the latency bars; the review page renders.
        _, html, _ = await b.get("/console/checks")
        assert '<svg class="lat"' in html and 'fill="#cf222e"' in html
        status, html, _ = await b.get("/console/review?since=7d")
        assert status == 200 and "till" in html
        assert (await b.get("/console/review?since=soon"))[0] == 400
        # On call: the rotation's holder now and next, and alice's own feed.
        _, html, _ = await b.get("/console/on-call")
        m = re.search(r'href="(http[^"]+\.ics)"', html)
        assert m and "frontline" in html
        feed = m.group(1).split("/console", 1)[1]
        async with aiohttp.ClientSession() as s, s.get(running.base + "/console" + feed) as r:
            assert r.status == 200 and r.content_type == "text/calendar"
            cal = Calendar.from_ical(await r.read())
        events = cal.walk("VEVENT")
        assert 4 <= len(events) <= 5  # every other week of 60 days
        assert {str(e["SUMMARY"]) for e in events} == {"On call: frontline"}
        starts = sorted(e.decoded("DTSTART").timestamp() for e in events)
        assert all(later - earlier == 14 * 86400 for earlier, later in itertools.pairwise(starts))
        forged = feed[:-8] + ("A" if feed[-8] != "A" else "B") + feed[-7:]
        assert (await b.get("/console" + forged))[0] == 404
    finally:
        await b.close()


async def test_cookies_are_secure_when_the_public_url_is_https(tmp_path: Path,
                                                               _no_agent_left_running: None
                                                               ) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    text = env.config(state, receiver, env.closed_port()).replace(
        'timezone = "Europe/Paris"', 'timezone = "Europe/Paris"\npublic_url = '
        '"https://status.shop.example"')
    agent = await start_agent(text, tmp_path)
    b = Browser.open(env.public_base(agent))
    try:
        status, html, headers = await b.get("/console/sign-in")
        assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
        # The client, like a browser, keeps a Secure cookie off plain http: as a TLS proxy
        # would, send it by hand.
        anon = headers["Set-Cookie"].split(";", 1)[0]
        found = re.search(r'name="csrf" value="([^"]+)"', html)
        assert found is not None
        csrf = found.group(1)

        async def post(path: str, data: dict[str, str]) -> tuple[int, dict[str, str]]:
            async with b.session.post(b.base + path, data=data, allow_redirects=False,
                                      headers={"Origin": "https://status.shop.example",
                                               "Cookie": anon}) as r:
                return r.status, dict(r.headers)

        # A POST whose Origin is the public URL (behind a TLS proxy) passes the guard.
        assert (await post("/console/sign-in", {"name": "alice", "csrf": csrf}))[0] == 200
        link = (await wait_for(lambda: env.sign_in_links(receiver, "alice"), 10, "a link"))[0]
        assert link.startswith("https://status.shop.example/console/link/")
        status, headers = await post("/console/link/" + link.rsplit("/console/link/", 1)[1],
                                     {"csrf": csrf})
        assert status == 303 and "Secure" in headers["Set-Cookie"]
        assert "onwatch_session=" in headers["Set-Cookie"]
    finally:
        await b.close()
        code = await agent.stop()
        await receiver.close()
    assert code == 0, agent.raw_log[-20:]
