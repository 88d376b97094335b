"""Remote probes with the real central and a real probe process, on loopback.

(The tests across hosts, with network namespaces, are in tests/test_probes_netns.py.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp

from agent import probe_wire
from checks.result import CheckResult, ErrorKind
from tests.probe_env import (
    Target,
    add_probe,
    central_config,
    pages,
    probe_file,
    start_in,
    start_probe,
)
from tests.support import AgentProcess, Receiver, free_port, onwatch, query, start_agent, wait_for

PROBE_ONLY = """
[[checks]]
name = "shop"
type = "http"
url = "{url}"
locations = ["berlin"]
"""


async def _open(state: Path, n: int = 1) -> bool:
    return len(query(state, "SELECT id FROM incidents WHERE state != 'resolved'")) >= n


async def _all_resolved(state: Path) -> bool:
    rows = query(state, "SELECT state FROM incidents")
    return bool(rows) and all(r[0] == "resolved" for r in rows)


async def test_probe_runs_the_check_and_the_central_pages_and_notices_its_silence(
        tmp_path: Path) -> None:
    target, receiver = await Target().start(), await Receiver().start()
    state = tmp_path / "state"
    central = await start_agent(central_config(state, receiver,
                                               PROBE_ONLY.format(url=target.url)), tmp_path)
    key = add_probe(central.config, "berlin")
    probe = await start_probe(probe_file(tmp_path, "berlin", central.base_url, key))
    try:
        await wait_for(lambda: target.hits >= 2, 10, "the probe checks the target")
        assert central.proc.returncode is None
        await wait_for(lambda: central.metric(
            'onwatch_check_location_up{check="shop",location="berlin"}'), 10,
            "the central hears the probe")
        assert receiver.messages == []
        health = json.loads((await central.get("/healthz"))[1])
        assert health["locations"] == {"shop": {"berlin": "up"}}
        target.up = False
        await wait_for(lambda: _open(state), 15, "an incident opened from berlin's results")
        await wait_for(lambda: pages(receiver), 10, "the owner paged")
        assert "berlin" in pages(receiver)[0] and "shop" in pages(receiver)[0]
        target.up = True
        await wait_for(lambda: _all_resolved(state), 15, "resolved when berlin sees it up")
        # The probe goes silent: one "location unreachable" incident, naming the check.
        await probe.stop(9)
        await wait_for(lambda: _open(state), 15, "the location unreachable incident")
        title, reason = query(state, "SELECT title, reason FROM incidents WHERE state != "
                                     "'resolved'")[0]
        assert title == "location berlin unreachable" and "shop" in reason
        n = len(receiver.messages)
        await wait_for(lambda: len(receiver.messages) > n - 1 and any(
            "berlin unreachable" in p for p in pages(receiver)), 10, "paged for the location")
        # Back: its incident resolves.
        probe = await start_probe(probe_file(tmp_path, "berlin", central.base_url, key))
        await wait_for(lambda: _all_resolved(state), 15, "the location incident resolved")
        shop_pages = [p for p in pages(receiver) if "unreachable" not in p and "shop" in p]
        assert len([p for p in shop_pages if "resolved" not in p.lower()]) == 1, shop_pages
    finally:
        await probe.stop()
        assert await central.stop() == 0
        await target.close()
        await receiver.close()


def _signed(key_text: str, name: str, body: bytes, *, at: int | None = None,
            path: str = "/probe/v1/results") -> dict[str, str]:
    key_id, key = probe_wire.parse_key(key_text)
    return {**probe_wire.sign_headers(name, key_id, key, "POST", path,
                                      int(time.time()) if at is None else at, body),
            "Content-Type": "application/json"}


async def test_forged_replayed_and_revoked_batches_change_nothing(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    central = await start_agent(central_config(
        state, receiver, PROBE_ONLY.format(url="http://127.0.0.1:9/"),
        unreachable_after="1h"), tmp_path)
    key = add_probe(central.config, "berlin")
    url = central.base_url + "/probe/v1/results"
    now = time.time()
    down = [probe_wire.result_to_json("shop", CheckResult.failure(
        ErrorKind.CONNECT, "refused")) | {"checked_at": now - 1 + i * 0.1} for i in range(5)]
    body = probe_wire.encode_batch("berlin", 10, down)

    async def post(headers: dict[str, str], data: bytes = body) -> tuple[int, dict[str, object]]:
        async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
            return r.status, json.loads(await r.text() or "{}")

    try:
        other = probe_wire.format_key(1, probe_wire.derive_key(b"x" * 32, "berlin", 1))
        assert (await post(_signed(other, "berlin", body)))[0] == 401, "a key not made here"
        assert (await post({}))[0] == 401, "unsigned"
        good = _signed(key, "berlin", body)
        tampered = body.replace(b'"refused"', b'"refusedX"')
        assert (await post(good, tampered))[0] == 401, "body changed after signing"
        assert (await post(_signed(key, "berlin", body, at=int(now) - 900)))[0] == 401, \
            "an old request replayed"
        assert (await post(_signed(key, "paris", body)))[0] == 401, "a probe never added"
        status, answer = await post(good)
        assert status == 200 and answer["accepted"] == 5, answer
        await wait_for(lambda: _open(state), 10, "the accepted batch opens the incident")
        status, answer = await post(good)  # the same request again, at once
        assert status == 200 and answer.get("duplicate") is True
        assert len(query(state, "SELECT id FROM incidents")) == 1
        # A wrong-format batch, signed: named, refused, nothing applied.
        junk = b'{"probe": "berlin", "seq": 11, "results": [{"check": 5}]}'
        status, answer = await post(_signed(key, "berlin", junk), junk)
        assert status == 400 and "results[0]" in str(answer["error"])
        # Revoked: the next properly signed batch is refused.
        out = await central.cli("probe", "revoke", "berlin")
        assert out.returncode == 0, out.stderr
        body2 = probe_wire.encode_batch("berlin", 12, down)
        assert (await post(_signed(key, "berlin", body2), body2))[0] == 401
        listed = (await central.cli("probe", "list")).stdout
        assert "berlin" in listed and "revoked" in listed
    finally:
        assert await central.stop() == 0
        await receiver.close()


async def _restartable(tmp_path: Path) -> tuple[Target, Receiver, str, AgentProcess,
                                                 AgentProcess]:
    """A central on a fixed port (so that it can be stopped and started again where the
    probe looks for it) and a probe "berlin" running the probe-only check."""
    target, receiver = await Target().start(), await Receiver().start()
    cfg = central_config(tmp_path / "state", receiver, PROBE_ONLY.format(url=target.url),
                         listen=f"127.0.0.1:{free_port()}", unreachable_after="1h")
    central = await start_agent(cfg, tmp_path)
    key = add_probe(central.config, "berlin")
    probe = await start_probe(probe_file(tmp_path, "berlin", central.base_url, key))
    return target, receiver, cfg, central, probe


async def test_results_buffered_while_the_central_was_away_arrive_in_order_as_history(
        tmp_path: Path) -> None:
    target, receiver, cfg, central, probe = await _restartable(tmp_path)
    state = tmp_path / "state"
    try:
        await wait_for(lambda: central.metric(
            'onwatch_check_location_up{check="shop",location="berlin"}'), 10, "first results")
        assert await central.stop() == 0
        # The central is away: the shop breaks and recovers; the probe keeps it all.
        target.up = False
        await wait_for(lambda: probe.events("probe_send_failed"), 10, "the probe buffers")
        hits = target.hits
        await wait_for(lambda: target.hits >= hits + 6, 15, "failures seen while away")
        target.up = True
        hits = target.hits
        await wait_for(lambda: target.hits >= hits + 3, 15, "up again while away")
        # Two intervals later the outage is history by the time it arrives.
        central = await start_agent(cfg, tmp_path)
        await wait_for(lambda: central.metric(
            'onwatch_probe_results_total{outcome="late",probe="berlin"}'), 20,
            "the buffered results arrive, marked late")
        await wait_for(lambda: central.metric(
            'onwatch_probe_results_total{outcome="fresh",probe="berlin"}'), 20,
            "fresh results after them")
        assert query(state, "SELECT id FROM incidents") == [], \
            "an outage already over when it arrived pages nobody"
        assert receiver.messages == []
    finally:
        await probe.stop()
        assert await central.stop() == 0
        await target.close()
        await receiver.close()


async def test_a_remote_outage_open_across_a_central_restart_resolves_once(
        tmp_path: Path) -> None:
    target, receiver, cfg, central, probe = await _restartable(tmp_path)
    state = tmp_path / "state"
    try:
        target.up = False
        await wait_for(lambda: _open(state), 15, "the outage opened from berlin")
        assert await central.stop() == 0
        central = await start_agent(cfg, tmp_path)  # knows the check is down (the store)
        await wait_for(lambda: central.metric(
            'onwatch_probe_results_total{outcome="fresh",probe="berlin"}'), 20,
            "berlin's results reach the restarted central")
        assert len(query(state, "SELECT id FROM incidents")) == 1, "no second incident"
        target.up = True
        await wait_for(lambda: _all_resolved(state), 20, "resolved when berlin sees it up")
        assert len(query(state, "SELECT id FROM incidents")) == 1
    finally:
        await probe.stop()
        assert await central.stop() == 0
        await target.close()
        await receiver.close()


async def test_a_probe_listing_both_instances_reaches_the_leader(tmp_path: Path,
                                                                 pg_url: str) -> None:
    """Two centrals on one PostgreSQL store: the standby refuses results (503), the probe
    moves on to the leader, and the leader pages; the key works on either instance."""
    target, receiver = await Target().start(), await Receiver().start()
    centrals = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        cfg = central_config(home / "state", receiver, PROBE_ONLY.format(url=target.url),
                             unreachable_after="1h",
                             agent_extra=f'store = "{pg_url}"\ninstance = "{name}"')
        centrals.append(await start_agent(cfg, home))
    leader, standby = centrals
    assert json.loads((await standby.get("/healthz"))[1])["role"] == "standby"
    key = add_probe(standby.config, "berlin")  # made on the standby, honoured by both
    probe = await start_probe(probe_file(
        tmp_path, "berlin", [standby.base_url, leader.base_url], key))
    try:
        await wait_for(lambda: leader.metric(
            'onwatch_probe_results_total{outcome="fresh",probe="berlin"}'), 20,
            "results reach the leader")
        assert await standby.metric(
            'onwatch_probe_batches_total{outcome="standby",probe="berlin"}'), "refused there"
        target.up = False
        await wait_for(lambda: pages(receiver), 20, "the leader pages from berlin's results")
        assert "berlin" in pages(receiver)[0]
    finally:
        await probe.stop()
        for c in centrals:
            assert await c.stop() == 0
        await target.close()
        await receiver.close()


async def test_a_probe_whose_key_is_refused_says_what_to_do(tmp_path: Path) -> None:
    target, receiver = await Target().start(), await Receiver().start()
    cfg = central_config(tmp_path / "state", receiver, PROBE_ONLY.format(url=target.url))
    central = await start_agent(cfg, tmp_path)
    key = add_probe(central.config, "berlin")
    revoked = onwatch("probe", "revoke", "berlin", "--config", str(central.config))
    assert revoked.returncode == 0, revoked.stderr
    probe = await start_in("probe", probe_file(tmp_path, "berlin", central.base_url, key),
                           None, "probe_central_unreachable")
    try:
        event = probe.events("probe_central_unreachable")[0]
        assert "HTTP 401" in event["error"]
        assert "onwatch probe add berlin" in event["hint"]
    finally:
        await probe.stop()
        assert await central.stop() == 0
        await receiver.close()
        await target.close()
