"""The probe protocol's signing and batch format, and the probe's on-disk buffer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent import probe_wire
from agent.config_probe import ProbeFileError, parse_probe_file
from agent.probe_buffer import MAX_BATCH, Buffer
from checks.result import CheckResult, ErrorKind

SECRET = b"s" * 32


def test_key_round_trip_and_derivation_per_name_and_id() -> None:
    key = probe_wire.derive_key(SECRET, "berlin", 1)
    assert probe_wire.parse_key(probe_wire.format_key(1, key)) == (1, key)
    assert key != probe_wire.derive_key(SECRET, "berlin", 2)
    assert key != probe_wire.derive_key(SECRET, "berlin2", 1)
    for bad in ("", "onwprobe.x.abc", "other.1.abc", "onwprobe.1.abc"):
        with pytest.raises(probe_wire.WireError):
            probe_wire.parse_key(bad)


def test_signature_covers_method_path_time_and_body() -> None:
    key = probe_wire.derive_key(SECRET, "berlin", 1)
    h = probe_wire.sign_headers("berlin", 1, key, "POST", "/probe/v1/results", 1000, b"{}")
    name, key_id, at, sig = probe_wire.signed_by(h)
    assert (name, key_id, at) == ("berlin", 1, 1000)
    assert probe_wire.verify(key, "POST", "/probe/v1/results", 1000, b"{}", sig)
    for args in (("GET", "/probe/v1/results", 1000, b"{}"),
                 ("POST", "/probe/v1/checks", 1000, b"{}"),
                 ("POST", "/probe/v1/results", 1001, b"{}"),
                 ("POST", "/probe/v1/results", 1000, b"{ }")):
        assert not probe_wire.verify(key, *args, sig)
    with pytest.raises(probe_wire.WireError):
        probe_wire.signed_by({})


def test_batch_round_trip() -> None:
    r = CheckResult(False, 0.5, "refused", ErrorKind.CONNECT, 123.0, {"x": 1.0})
    body = probe_wire.encode_batch("berlin", 7, [probe_wire.result_to_json("shop", r)])
    batch = probe_wire.decode_batch(body)
    assert (batch.probe, batch.seq) == ("berlin", 7)
    assert batch.results == (("shop", r),)


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "not JSON"),
    (b"[]", "JSON object"),
    (b'{"probe": "p", "seq": 0, "results": []}', "seq"),
    (b'{"probe": "p", "seq": 1, "results": [{"check": "c"}]}', "ok"),
    (b'{"probe": "p", "seq": 1, "results": [{"check": "c", "ok": true, "checked_at": -1}]}',
     "positive"),
    (b'{"probe": "p", "seq": 1, "results": [{"check": "c", "ok": false, "checked_at": 1, '
     b'"error_kind": "boom"}]}', "error_kind"),
    (b'{"probe": "p", "seq": 1, "results": [{"check": "c", "ok": true, "checked_at": 1, '
     b'"observations": {"a": "b"}}]}', "observations"),
])
def test_garbage_batches_are_named(body: bytes, says: str) -> None:
    with pytest.raises(probe_wire.WireError, match=says):
        probe_wire.decode_batch(body)


def item(at: float, check: str = "shop") -> dict[str, object]:
    return probe_wire.result_to_json(check, CheckResult(True, 0.01, "ok", None, at))


def test_buffer_sends_in_order_and_a_retry_is_the_same_batch(tmp_path: Path) -> None:
    now = time.time()
    buf = Buffer(tmp_path, "berlin", max_bytes=10**7, max_age=3600)
    for i in range(MAX_BATCH + 10):
        buf.add(item(now - 100 + i * 0.01))
    seq, body = buf.next_batch(now) or (0, b"")
    assert buf.next_batch(now) == (seq, body), "an unacknowledged batch is sent again as is"
    first = probe_wire.decode_batch(body)
    assert len(first.results) == MAX_BATCH
    buf.done(seq)
    # A new Buffer on the same directory (the probe restarted) carries on in order.
    buf = Buffer(tmp_path, "berlin", max_bytes=10**7, max_age=3600)
    assert buf.waiting() == {"batches": 0, "results": 10}
    seq2, body2 = buf.next_batch(now) or (0, b"")
    assert seq2 > seq
    times = [r.checked_at for _, r in first.results + probe_wire.decode_batch(body2).results]
    assert times == sorted(times) and len(times) == MAX_BATCH + 10
    buf.done(seq2)
    assert buf.next_batch(now) is None


def test_a_wiped_buffer_starts_above_earlier_sequence_numbers(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "a", "berlin", max_bytes=10**7, max_age=3600)
    buf.add(item(time.time()))
    seq, _ = buf.next_batch(time.time()) or (0, b"")
    assert seq >= int(time.time() * 1000) - 5000


def test_buffer_bounds_drop_the_oldest(tmp_path: Path) -> None:
    now = time.time()
    buf = Buffer(tmp_path, "berlin", max_bytes=20_000, max_age=60)
    buf.add(item(now - 120))  # older than max_age: dropped when batched
    for i in range(400):
        buf.add(item(now - 50 + i * 0.1))
    assert buf.size() <= 20_000 and buf.dropped > 0
    _, body = buf.next_batch(now) or (0, b"")
    got = [r.checked_at for _, r in probe_wire.decode_batch(body).results]
    assert got and min(got) > now - 60 and got == sorted(got)
    assert max(got) == pytest.approx(now - 50 + 399 * 0.1), "the newest results are kept"


def test_probe_file_errors_name_the_key(tmp_path: Path) -> None:
    p = tmp_path / "probe.toml"
    p.write_text('[probe]\nname = "bad name"\ncentral = "ftp://x"\nreport_evry = "1s"\n')
    with pytest.raises(ProbeFileError) as exc:
        parse_probe_file(p)
    text = str(exc.value)
    assert "probe: name" in text and "probe: central" in text and "probe: key" in text
    assert 'unknown key "report_evry"' in text
    p.write_text('[probe]\nname = "berlin"\ncentral = "http://127.0.0.1:1"\nkey = "k"\n'
                 'state_dir = "st"\n')
    cfg = parse_probe_file(p)
    assert cfg.state_dir == tmp_path / "st" and json.dumps(cfg.report_every)


def test_the_shipped_probe_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONWATCH_PROBE_KEY", "onwprobe.1.x")
    cfg = parse_probe_file(Path(__file__).parent.parent / "deploy" / "probe.example.toml")
    assert (cfg.name, cfg.report_every, cfg.buffer_max_bytes) == ("shop-berlin", 2.0, 64 << 20)
