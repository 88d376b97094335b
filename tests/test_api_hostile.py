"""Hostile HTTP against a real agent: every route answers 4xx JSON, never 500, never internals.

One `onwatch run` process serves the whole module (starting one per example would
make the property test slow); requests are written byte by byte over a raw socket so
that headers can carry what no HTTP library would send (non-UTF-8, control bytes).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import ROOT

TOKEN = "a-test-token-that-is-long-enough"
HB_TOKEN = "heartbeat-token-123"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    port: int
    log: list[str]

    def request(self, method: bytes, path: bytes, headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
                body: bytes = b"") -> Answer:
        head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1",
                b"Connection: close", b"Content-Length: " + str(len(body)).encode()]
        head += [k + b": " + v for k, v in headers]
        raw = b"\r\n".join(head) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(raw)
            data = b""
            for _ in range(10_000):  # bounded: the agent closes after one answer
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        top, _, content = data.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        return Answer(status, hdrs, content)


def _config(tmp: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    return f"""
[agent]
state_dir = "{tmp / 'state'}"
listen = "127.0.0.1:0"
api_token = "{TOKEN}"

[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{dead}/alice"]

[[policies]]
name = "p"
[[policies.steps]]
notify = ["alice"]

[intake]
policy = "p"
[[intake.webhooks]]
name = "backups"

[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = {dead}
interval = "30s"
timeout = "1s"
contacts = ["alice"]
tags = ["shop"]

[[checks]]
name = "backup"
type = "heartbeat"
period = "1h"
token = "{HB_TOKEN}"
contacts = ["alice"]
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("hostile")
    cfg = tmp / "onwatch.toml"
    cfg.write_text(_config(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log: list[str] = []
    started = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            text = line.decode(errors="replace")
            log.append(text)
            if '"agent_started"' in text and not port:
                port.append(int(json.loads(text)["listen"].rsplit(":", 1)[1]))
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(20), "".join(log[-20:])
        yield Agent(proc, port[0], log)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        assert proc.stderr is not None
        proc.stderr.close()


AUTH = [(b"Authorization", b"Bearer " + TOKEN.encode())]
HUGE = b"99999999999999999999999"
NESTED = b"[" * 30_000
DEEP_OBJECT = b'{"a":' * 10_000


def _is_clean_json_error(ans: Answer) -> None:
    assert ans.status < 500, (ans.status, ans.body[:300])
    assert "python" not in ans.headers.get("server", "").lower(), ans.headers
    assert "aiohttp" not in ans.headers.get("server", "").lower(), ans.headers
    assert (b"Traceback" not in ans.body and b"Error:" not in ans.body[:200]) or ans.status < 400


def test_non_utf8_bearer_is_401_json(agent: Agent) -> None:
    for value in (b"Bearer \xff\xfe\xfd", b"Bearer \xc3\x28", b"\xff", b"Bearer " + b"\x80" * 64,
                  b"Bearer " + TOKEN.encode() + b"\xff"):
        ans = agent.request(b"GET", b"/api/v1/incidents", [(b"Authorization", value)])
        assert ans.status == 401, (value, ans.status, ans.body[:200])
        assert "error" in ans.json()  # type: ignore[operator]


def test_huge_ids_are_404_json(agent: Agent) -> None:
    for method, path in ((b"GET", b"/api/v1/incidents/" + HUGE),
                         (b"POST", b"/api/v1/incidents/" + HUGE + b"/ack"),
                         (b"POST", b"/api/v1/incidents/" + HUGE + b"/resolve"),
                         (b"POST", b"/api/v1/incidents/" + HUGE + b"/notes"),
                         (b"DELETE", b"/api/v1/maintenance/" + HUGE),
                         (b"GET", b"/api/v1/incidents/9223372036854775808")):
        ans = agent.request(method, path, AUTH, b'{"text": "x"}')
        assert ans.status == 404, (method, path, ans.status, ans.body[:200])
        assert "error" in ans.json()  # type: ignore[operator]


def test_deeply_nested_json_is_400(agent: Agent) -> None:
    for path in (b"/api/v1/incidents", b"/api/v1/incidents/1/ack", b"/api/v1/maintenance",
                 b"/api/v1/intake/alertmanager", b"/api/v1/intake/webhook/backups"):
        for body in (NESTED, DEEP_OBJECT):
            ans = agent.request(b"POST", path, AUTH, body)
            assert ans.status == 400, (path, ans.status, ans.body[:200])
            assert "error" in ans.json()  # type: ignore[operator]


def test_strings_that_cannot_be_stored_are_400(agent: Agent) -> None:
    # A lone surrogate is valid JSON text but no UTF-8 string: the store cannot keep it.
    for body in (b'{"title": "\\ud800"}', b'{"title": "x", "by": "\\udfff"}',
                 b'{"title": "x", "reason": "\\u0000\\ud83d"}'):
        ans = agent.request(b"POST", b"/api/v1/incidents", AUTH, body)
        assert ans.status == 400, (body, ans.status, ans.body[:200])
    for path in (b"/api/v1/intake/webhook/backups", b"/api/v1/intake/alertmanager"):
        ans = agent.request(b"POST", path, AUTH, b'{"title": "\\ud800", "status": "firing", '
                            b'"alerts": [{"labels": {"alertname": "\\udfff"}}]}')
        assert ans.status == 400, (path, ans.status, ans.body[:200])
        ans = agent.request(b"POST", path + b"/%ED%A0%80-not-a-token", [], b"{}")
        assert ans.status in (401, 404), (path, ans.status, ans.body[:200])
    ans = agent.request(b"POST", b"/api/v1/maintenance", AUTH,
                        b'{"checks": ["pos"], "for": "' + b"9" * 400 + b'd"}')
    assert ans.status == 400, ans.body[:200]


def test_unknown_routes_and_methods_answer_json(agent: Agent) -> None:
    for method, path, status in ((b"GET", b"/api/v1/nothing", 404),
                                 (b"PUT", b"/api/v1/incidents", 405),
                                 (b"GET", b"/api/v1/incidents/-1", 404),
                                 (b"GET", b"/api/v1/incidents/abc", 404)):
        ans = agent.request(method, path, AUTH)
        assert ans.status == status, (method, path, ans.status)
        assert "error" in ans.json()  # type: ignore[operator]


def test_server_header_names_no_versions(agent: Agent) -> None:
    for path in (b"/healthz", b"/api/v1/incidents", b"/ack/x.y", b"/nowhere", b"/metrics"):
        ans = agent.request(b"GET", path)
        server = ans.headers.get("server", "")
        assert "Python" not in server and "aiohttp" not in server, (path, server)


def test_heartbeat_with_non_ascii_token_is_403(agent: Agent) -> None:
    for path, headers in ((b"/heartbeat/backup?token=%C3%A9%FF", []),
                          (b"/heartbeat/backup?token=%ED%A0%80", []),
                          (b"/heartbeat/backup", [(b"Authorization", b"Bearer \xc3\xa9\xff")])):
        ans = agent.request(b"POST", path, headers)
        assert ans.status == 403, (path, ans.status, ans.body[:200])


METHODS = st.sampled_from([b"GET", b"POST", b"DELETE", b"PUT", b"PATCH", b"HEAD", b"OPTIONS"])
IDS = st.one_of(st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
                st.binary(max_size=12).map(lambda b: b.hex().encode()), st.just(HUGE))
PATHS = st.one_of(
    st.just(b"/api/v1/incidents"), st.just(b"/api/v1/maintenance"),
    st.sampled_from([b"/api/v1/intake/alertmanager", b"/api/v1/intake/webhook/backups",
                     b"/api/v1/intake/webhook/none"]),
    st.binary(max_size=24).map(lambda b: b"/api/v1/intake/alertmanager/" + b.hex().encode()),
    IDS.map(lambda i: b"/api/v1/incidents/" + i),
    st.tuples(IDS, st.sampled_from([b"ack", b"resolve", b"notes", b"x"])).map(
        lambda t: b"/api/v1/incidents/" + t[0] + b"/" + t[1]),
    IDS.map(lambda i: b"/api/v1/maintenance/" + i),
    st.binary(max_size=80).map(lambda b: b"/ack/" + b.hex().encode() + b"." + b[:8].hex().encode()),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.=", max_size=60).map(
        lambda t: b"/ack/" + t.encode()),
    st.sampled_from([b"/heartbeat/backup", b"/heartbeat/pos", b"/heartbeat/none"]).flatmap(
        lambda p: st.binary(max_size=20).map(lambda b: p + b"?token=" + b.hex().encode())),
    st.sampled_from([b"/healthz", b"/inbox", b"/inbox/alice", b"/metrics"]),
)
HEADER_VALUE = st.binary(max_size=60).map(
    lambda b: bytes(c for c in b if c not in b"\r\n\0") or b"x")
AUTHS = st.one_of(st.just(AUTH[0][1]), HEADER_VALUE, HEADER_VALUE.map(lambda v: b"Bearer " + v))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["title", "by", "via", "text", "cause", "fix", "severity", "policy",
                         "checks", "tags", "for", "reason", "message", "status", "alerts",
                         "labels", "key", "starts_at", "fingerprint"]) | st.text(max_size=5),
        inner, max_size=5),
    max_leaves=12)
BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"title": st.text(max_size=40)}, optional={
        "severity": st.sampled_from(["critical", "high", "low", "x"]),
        "by": st.text(max_size=20), "via": st.text(max_size=10),
        "for": st.text(alphabet="0123456789.smhd", max_size=30),
        "checks": st.lists(st.sampled_from(["pos", "backup", "x"]), max_size=2),
        "text": st.text(max_size=20)}).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: b"[" * n),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, auth=st.one_of(st.none(), AUTHS),
       extra=st.lists(st.tuples(st.sampled_from([b"Content-Type", b"X-Forwarded-For", b"Accept",
                                                 b"Cookie", b"X-Y"]), HEADER_VALUE), max_size=3),
       body=BODIES)
def test_no_request_gets_a_500(agent: Agent, method: bytes, path: bytes, auth: bytes | None,
                               extra: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = ([(b"Authorization", auth)] if auth is not None else []) + extra
    ans = agent.request(method, path, headers, body)
    assert ans.status < 500, (method, path, headers, body[:100], ans.status, ans.body[:300])
    server = ans.headers.get("server", "")
    assert "Python" not in server and "aiohttp" not in server
    assert b"Traceback" not in ans.body and b'File "' not in ans.body
    # The HTTP parser's own 400 (a header with control bytes) comes before any route: text.
    parser_refused = ans.status == 400 and ans.headers.get("content-type", "").startswith(
        "text/plain")
    if path.startswith(b"/api/") and ans.status >= 400 and method != b"HEAD" and not \
            parser_refused:
        doc = ans.json()
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str), ans.body[:200]
    assert agent.proc.poll() is None, "the agent died"


def test_the_agent_logged_no_unhandled_error(agent: Agent) -> None:
    time.sleep(0.2)  # let the reader thread catch the last lines
    text = "".join(agent.log)
    assert "Error handling request" not in text, text[-3000:]
    assert "<traceback object" not in text
