"""The probe endpoints against a hostile caller: odd headers and odd (signed) batches get a
clear 4xx, never a 500, and nothing is applied; the probe's key never reaches the log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest

from agent import probe_wire
from tests.probe_env import add_probe, central_config
from tests.support import Receiver, query, raw_request, start_agent

CHECK = """
[[checks]]
name = "shop"
type = "http"
url = "http://127.0.0.1:9/"
locations = ["berlin"]
"""




def _signed(key_text: str, body: bytes) -> dict[str, str]:
    key_id, key = probe_wire.parse_key(key_text)
    return {**probe_wire.sign_headers("berlin", key_id, key, "POST", "/probe/v1/results",
                                      int(time.time()), body),
            "Content-Type": "application/json"}


@pytest.mark.timeout(60)
async def test_odd_headers_and_odd_signed_batches_are_refused_not_crashes(tmp_path: Path
                                                                          ) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    central = await start_agent(central_config(state, receiver, CHECK, unreachable_after="1h"),
                                tmp_path)
    key = add_probe(central.config, "berlin")
    url = central.base_url + "/probe/v1/results"
    try:
        start = b"POST /probe/v1/results HTTP/1.1\r\nHost: x\r\n"
        sig = "a" * 64
        for who, at, signature in (
                ("berlin.1", str(int(time.time())), "\u00e9" * 64),  # non-ASCII "signature"
                ("berlin.1", "9" * 5000, sig),                       # past int()'s digit limit
                ("berlin.1", "\u00b2\u00b3", sig),                   # digits int() refuses
                ("berlin.\u00b9", str(int(time.time())), sig)):
            head = start + (f"X-Onwatch-Probe: {who}\r\nX-Onwatch-Time: {at}\r\n"
                            f"X-Onwatch-Signature: {signature}\r\n").encode()
            assert await raw_request(central.address, head, b"{}") == 401, (who, at[:10], signature)
        for path in (b"POST /probe/v1/results", b"GET /probe/v1/checks"):  # not UTF-8
            head = (path + b" HTTP/1.1\r\nHost: x\r\nX-Onwatch-Probe: \xff\xfe.1\r\n"
                    b"X-Onwatch-Time: 1\r\nX-Onwatch-Signature: " + b"a" * 64 + b"\r\n")
            assert await raw_request(central.address, head) == 401, path

        async def post(body: bytes) -> tuple[int, str]:
            async with aiohttp.ClientSession() as s, \
                    s.post(url, data=body, headers=_signed(key, body)) as r:
                return r.status, await r.text()

        now = time.time()
        item = {"check": "shop", "ok": False, "checked_at": now, "latency_s": 0.0,
                "reason": "x", "error_kind": "connect"}
        for name, body in (
                ("nested", b'{"probe": "berlin", "seq": 1, "results": ' + b"[" * 50_000
                 + b"]" * 50_000 + b"}"),
                ("huge seq", probe_wire.encode_batch("berlin", 2**64, [item])),
                ("huge time", probe_wire.encode_batch("berlin", 3, [{**item,
                                                                     "checked_at": 10**400}])),
                ("huge observation", probe_wire.encode_batch("berlin", 4, [{
                    **item, "observations": {"x": 10**400}}])),
                ("NaN", json.dumps({"probe": "berlin", "seq": 5, "results": [
                    {**item, "latency_s": float("nan")}]}).encode()),
                ("NUL reason", probe_wire.encode_batch("berlin", 6, [{**item,
                                                                      "reason": "a\u0000b"}])),
                ("lone surrogate", probe_wire.encode_batch("berlin", 6, [{
                    **item, "reason": "a\udcffb"}])),
                ("too many", probe_wire.encode_batch(
                    "berlin", 6, [item] * (probe_wire.MAX_RESULTS + 1)))):
            status, text = await post(body)
            assert status in (400, 413), (name, status, text)
            assert "error" in json.loads(text), (name, text)
        assert query(state, "SELECT id FROM incidents") == []
        # A sound batch still goes through after all that (nothing above used up a seq).
        status, text = await post(probe_wire.encode_batch("berlin", 7, [item]))
        assert status == 200 and json.loads(text)["accepted"] == 1, text
    finally:
        assert await central.stop() == 0
        await receiver.close()
    secret_part = key.rsplit(".", 1)[1]
    assert secret_part not in "\n".join(central.raw_log)
