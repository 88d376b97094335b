"""The console against a hostile signed-in person (a real `onwatch run`): text that no store
can keep (NUL, lone surrogates: PostgreSQL refuses both) is refused at the door with a
clear 400 and nothing is written; markup in what people type is shown, never run."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from tests import console_env as env
from tests.console_env import Browser
from tests.support import Receiver, query, raw_request, start_agent, wait_for


async def test_unstorable_text_is_refused_and_markup_is_escaped(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(env.config(state, receiver, env.closed_port()), tmp_path)
    b = Browser.open(env.public_base(agent))
    try:
        await wait_for(lambda: query(state, "SELECT id FROM incidents"), 15, "an incident")
        await b.sign_in(receiver, "alice")
        csrf = await b.csrf("/console/incidents/1")
        before = query(state, "SELECT COUNT(*) FROM timeline")
        for action, form in (("note", {"text": "till \x00 down"}),
                             ("public", {"text": "back \x00 soon"}),
                             ("resolve", {"cause": "cable\x00", "fix": "plugged"}),
                             ("action", {"text": "label \x00", "owner": "alice"})):
            status, html, _ = await b.post(f"/console/incidents/1/{action}",
                                           {"csrf": csrf, **form})
            assert status == 400 and "NUL" in html, (action, status, html[:300])
        status, html, _ = await b.post("/console/maintenance", {
            "csrf": csrf, "check": "till", "for": "1h", "reason": "move\x00"})
        assert status == 400 and "NUL" in html
        assert query(state, "SELECT COUNT(*) FROM timeline") == before
        assert query(state, "SELECT state FROM incidents WHERE id = 1") == [("open",)]
        assert query(state, "SELECT COUNT(*) FROM maintenance") == [(0,)]
        # The API's public update (private listener) keeps the same rule.
        async with aiohttp.ClientSession() as s, s.post(
                agent.base_url + "/api/v1/incidents/1/public",
                data=json.dumps({"text": "a \u0000 b"}),
                headers={"Authorization": f"Bearer {env.API_TOKEN}"}) as r:
            assert r.status == 400, await r.text()
        # Markup is text: shown escaped on the incident page.
        status, _, _ = await b.post("/console/incidents/1/note", {
            "csrf": csrf, "text": "<script>alert(1)</script><img src=x onerror=alert(2)>"})
        assert status == 303
        _, html, _ = await b.get("/console/incidents/1")
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)" in html
    finally:
        await b.close()
        assert await agent.stop() == 0
        await receiver.close()




async def test_forms_the_server_cannot_read_are_a_400_not_a_500(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(env.config(state, receiver, env.closed_port()), tmp_path)
    try:
        address = env.public_base(agent).removeprefix("http://")
        start = (f"POST /console/sign-in HTTP/1.1\r\nHost: {address}\r\n"
                 f"Origin: http://{address}\r\n").encode()
        form = b"Content-Type: application/x-www-form-urlencoded; charset="
        for head, body in (
                (form + b"x-bogus\r\n", b"name=alice&csrf=x"),       # no such codec
                (form + b"utf-8\r\n", b"name=\xff\xfe&csrf=x"),      # not UTF-8
                (b"Content-Type: multipart/form-data; boundary=zz\r\n",
                 b"--zz\r\nno headers at all\r\n--zz--\r\n")):
            assert await raw_request(address, start + head, body) in (400, 403), (head, body)
            subscribe = start.replace(b"/console/sign-in", b"/subscribe")
            assert await raw_request(address, subscribe + head, body) == 400, (head, body)
        # The API's public update (private listener, bearer token): a deep or undecodable
        # JSON body is the same clear 400 as on every other API route.
        # (A body read as the JSON it is, whatever charset it claims: incident 999 is unknown.)
        api = (f"POST /api/v1/incidents/999/public HTTP/1.1\r\nHost: {agent.address}\r\n"
               f"Authorization: Bearer {env.API_TOKEN}\r\n").encode()
        json_type = b"Content-Type: application/json; charset="
        for head, body, expected in (
                (json_type + b"utf-8\r\n", b'{"text": ' + b"[" * 50_000, 400),
                (json_type + b"x-bogus\r\n", b'{"text": "hi"}', 404)):
            assert await raw_request(agent.address, api + head, body) == expected, (head, body[:20])
        assert not [line for line in agent.raw_log if "Traceback" in line]
    finally:
        assert await agent.stop() == 0
        await receiver.close()


async def test_cookies_of_undecodable_bytes_are_no_cookies(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    agent = await start_agent(env.config(tmp_path / "state", receiver, env.closed_port()),
                              tmp_path)
    try:
        address = env.public_base(agent).removeprefix("http://")
        for cookie in (b"onwatch_csrf=\xff\xfe", b"onwatch_csrf=\xed\xb3\xbf",
                       b"onwatch_session=\xff\xfe; onwatch_csrf=" + b"a" * 30):
            head = (f"GET /console/sign-in HTTP/1.1\r\nHost: {address}\r\n").encode()
            assert await raw_request(address, head + b"Cookie: " + cookie + b"\r\n", b"") == 200
            head = head.replace(b"GET", b"POST") + f"Origin: http://{address}\r\n".encode()
            form = b"Content-Type: application/x-www-form-urlencoded\r\nCookie: " + cookie
            assert await raw_request(address, head + form + b"\r\n", b"name=alice&csrf=x") == 403
        assert not [line for line in agent.raw_log if "Traceback" in line]
    finally:
        assert await agent.stop() == 0
        await receiver.close()
