"""The heartbeat kind: the ping endpoint on the agent's real app, and the verdict on time.

The app is `agent.web.build_app` over a real Runner, Engine and Store (in a temporary
directory) for a parsed config, served by aiohttp's test server on 127.0.0.1. The probe's
judgement is a pure function of the time, table-tested with explicit times.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from agent import config as config_mod
from agent import web
from agent.engine import Engine
from agent.fields import Section
from agent.metrics import Metrics
from agent.runner import Runner
from agent.store.sqlite import Store
from checks import heartbeat
from checks.base import ProbeContext, run_with_deadline
from checks.heartbeat import HeartbeatSpec, verdict
from checks.result import ErrorKind

TOKEN = "s3cret-backup-token-0042"
FILE_TOKEN = "another-token-from-a-file"


@dataclass
class Agent:
    client: TestClient[Any, Any]
    ctx: ProbeContext
    config: config_mod.Config


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    (tmp_path / "export.token").write_text(FILE_TOKEN + "\n")
    raw = {
        "agent": {"state_dir": str(tmp_path / "state")},
        "contacts": [{"name": "ops", "urls": ["json://127.0.0.1:9/ops"]}],
        "defaults": {"contacts": ["ops"]},
        "checks": [
            {"name": "backup", "type": "heartbeat", "period": "24h", "grace": "1h",
             "token": TOKEN},
            {"name": "pos-export", "type": "heartbeat", "period": "1h",
             "token_file": "export.token"},
            {"name": "shop", "type": "tcp", "host": "127.0.0.1", "port": 9},
        ],
    }
    cfg = config_mod.parse(raw, tmp_path / "onwatch.toml")
    store = Store.open(tmp_path / "state")
    metrics = Metrics()
    engine = Engine(cfg, store, metrics, b"k" * 32, time.time)
    ctx = ProbeContext()
    app = web.build_app(Runner(cfg, engine, metrics, time.time), "api-token-0123456789", ctx)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield Agent(client, ctx, cfg)
    finally:
        await client.close()
        await ctx.close()
        store.close()


# --- the endpoint -------------------------------------------------------------------------


async def test_get_with_token_records_the_ping(agent: Agent) -> None:
    before = time.time()
    resp = await agent.client.get("/heartbeat/backup", params={"token": TOKEN})
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "check": "backup"}
    assert before <= agent.ctx.heartbeats["backup"] <= time.time()


async def test_post_with_bearer_token_from_a_file(agent: Agent) -> None:
    resp = await agent.client.post("/heartbeat/pos-export", data=b"done, 412 rows",
                                   headers={"Authorization": f"Bearer {FILE_TOKEN}"})
    assert resp.status == 200
    assert set(agent.ctx.heartbeats) == {"pos-export"}


@pytest.mark.parametrize(("params", "headers"), [
    ({}, {}),
    ({"token": "wrong-token-wrong-token"}, {}),
    ({"token": TOKEN[:-1]}, {}),
    ({"token": "pos-export"}, {"Authorization": f"Bearer {TOKEN}x"}),
    ({}, {"Authorization": f"Basic {TOKEN}"}),
    ({}, {"Authorization": "Bearer "}),
    ({"token": FILE_TOKEN}, {}),  # another check's token
])
async def test_wrong_or_missing_token_is_403_and_records_nothing(
        agent: Agent, params: dict[str, str], headers: dict[str, str]) -> None:
    with capture_logs() as logs:
        resp = await agent.client.post("/heartbeat/backup", params=params, headers=headers)
    assert resp.status == 403
    assert await resp.json() == {"error": "wrong or missing token"}
    assert agent.ctx.heartbeats == {}
    assert TOKEN not in repr(logs) and FILE_TOKEN not in repr(logs)


@pytest.mark.parametrize("name", ["nightly", "shop"])
async def test_unknown_check_or_another_type_is_404(agent: Agent, name: str) -> None:
    resp = await agent.client.get(f"/heartbeat/{name}", params={"token": TOKEN})
    assert resp.status == 404
    assert await resp.json() == {"error": "no heartbeat check by that name"}
    assert agent.ctx.heartbeats == {}


async def test_other_methods_are_405(agent: Agent) -> None:
    resp = await agent.client.put("/heartbeat/backup", params={"token": TOKEN})
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, POST"
    assert agent.ctx.heartbeats == {}


async def test_the_probe_sees_the_ping(agent: Agent) -> None:
    spec = agent.config.checks[0].spec
    waiting = await run_with_deadline(heartbeat.probe, spec, agent.ctx, 1.0)
    assert waiting.ok and waiting.reason.startswith("waiting for the first heartbeat, due by ")
    assert (await agent.client.get("/heartbeat/backup", params={"token": TOKEN})).status == 200
    seen = await run_with_deadline(heartbeat.probe, spec, agent.ctx, 1.0)
    assert seen.ok
    assert seen.reason == "last heartbeat 0s ago (expected every 24h, grace 1h)"
    assert 0 <= seen.observations["heartbeat_age_s"] < 5


# --- the probe ----------------------------------------------------------------------------


async def test_probe_fails_after_period_and_grace() -> None:
    ctx = ProbeContext()
    spec = HeartbeatSpec("backup", period=3600, grace=600, token=TOKEN)
    ctx.heartbeats["backup"] = time.time() - 3600 - 601
    result = await run_with_deadline(heartbeat.probe, spec, ctx, 1.0)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason.startswith("no heartbeat since ")
    assert result.reason.endswith(" (expected every 1h, grace 10m)")
    assert result.observations["heartbeat_age_s"] >= 4201


async def test_probe_never_pinged_fails_after_period_and_grace_since_watching() -> None:
    ctx = ProbeContext()
    spec = HeartbeatSpec("backup", period=3600, grace=600, token=TOKEN)
    assert (await heartbeat.probe(spec, ctx)).ok  # watching starts at the first run
    ctx.heartbeat_watch_since["backup"] -= 3600 + 601  # as if that were 70 minutes ago
    result = await heartbeat.probe(spec, ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason.startswith("no heartbeat since onwatch began watching at ")
    assert result.observations == {}


UTC = dt.UTC
T0 = dt.datetime(2024, 5, 2, 3, 12, tzinfo=UTC).timestamp()  # a ping at 03:12
H = 3600.0


@pytest.mark.parametrize(
    ("last", "since", "now", "period", "ok", "reason"),
    [
        (T0, T0 - 5 * H, T0 + 2 * H, 24 * H, True,
         "last heartbeat 2h ago (expected every 24h, grace 1h)"),
        (T0, T0 - 5 * H, T0 + 25 * H, 24 * H, True,  # exactly period + grace: still in time
         "last heartbeat 25h ago (expected every 24h, grace 1h)"),
        (T0, T0 - 5 * H, T0 + 25 * H + 1, 24 * H, False,  # the next day: with the date
         "no heartbeat since 2024-05-02 03:12 (expected every 24h, grace 1h)"),
        (T0, T0 - 5 * H, T0 + 20 * H, 18 * H, False,  # 23:12 the same day: the time alone
         "no heartbeat since 03:12 (expected every 18h, grace 1h)"),
        (T0 + 30, T0, T0 + 30.4, 24 * H, True,
         "last heartbeat 0s ago (expected every 24h, grace 1h)"),
        (T0 + 10, T0, T0, 24 * H, True,  # a ping stamped just after `now` (clock step)
         "last heartbeat 0s ago (expected every 24h, grace 1h)"),
        (None, T0, T0 + H, 24 * H, True,
         "waiting for the first heartbeat, due by 2024-05-03 04:12 (expected every 24h, "
         "grace 1h)"),
        (None, T0, T0 + 25 * H, 24 * H, True,
         "waiting for the first heartbeat, due by 04:12 (expected every 24h, grace 1h)"),
        (None, T0, T0 + 25 * H + 1, 24 * H, False,
         "no heartbeat since onwatch began watching at 2024-05-02 03:12 (expected every 24h, "
         "grace 1h)"),
    ],
)
def test_verdict(last: float | None, since: float, now: float, period: float, ok: bool,
                 reason: str) -> None:
    got_ok, got_reason, obs = verdict(last, since, now, period, 1 * H, UTC)
    assert (got_ok, got_reason) == (ok, reason)
    assert ("heartbeat_age_s" in obs) == (last is not None)
    if last is not None:
        assert obs["heartbeat_age_s"] == max(0.0, now - last)


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any], base: Path = Path(".")) -> tuple[HeartbeatSpec, list[str]]:
    errors: list[str] = []
    sec = Section({"name": "backup", **raw}, "checks[1]", errors, base)
    sec.string("name")  # the config reader reads the name before the kind's parse
    spec = heartbeat.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, errors = parse({"period": "24h", "grace": "1h", "token": TOKEN})
    assert errors == []
    assert spec == HeartbeatSpec("backup", 86400.0, 3600.0, TOKEN)
    assert TOKEN not in repr(spec)
    assert heartbeat.target(spec) == "/heartbeat/backup"
    monkeypatch.setenv("BACKUP_TOKEN", TOKEN)
    assert parse({"period": "1h", "token": "${BACKUP_TOKEN}"}) == (
        HeartbeatSpec("backup", 3600.0, 300.0, TOKEN), [])
    (tmp_path / "t").write_text(TOKEN + "\n")
    assert parse({"period": "1h", "grace": "0s", "token_file": "t"}, tmp_path) == (
        HeartbeatSpec("backup", 3600.0, 0.0, TOKEN), [])


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"token": TOKEN}, 'checks[1]: period: is required (a duration like "30s")'),
        ({"period": "1h"}, "checks[1]: token: is required (or token_file)"),
        ({"period": "1h", "token": "short"},
         "checks[1]: token: must be at least 16 characters (it guards the heartbeat URL)"),
        ({"period": "1h", "token": 1234567890123456789},
         "checks[1]: token: must be a string, got a number"),
        ({"period": "1h", "token": TOKEN, "token_file": "t"},
         "checks[1]: token: give either token or token_file, not both"),
        ({"period": "1h", "token_file": "no-such-file"}, "checks[1]: token_file: cannot read "),
        ({"period": "1h", "token": "${NO_SUCH_VARIABLE_HERE}"},
         "checks[1]: token: environment variable NO_SUCH_VARIABLE_HERE is not set"),
        ({"period": "0s", "token": TOKEN}, 'checks[1]: period: must be > 0s, got "0s"'),
        ({"period": "1h", "grace": "soon", "token": TOKEN}, "checks[1]: grace: must be a duration"),
        ({"period": "1h", "token": TOKEN, "perod": "1h"},
         'checks[1]: unknown key "perod" (did you mean "period"?)'),
    ],
)
def test_parse_errors(raw: dict[str, Any], error: str) -> None:
    _, errors = parse(raw)
    assert len(errors) == 1 and errors[0].startswith(error), errors
    assert TOKEN not in errors[0]


def test_short_token_file(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("tiny\n")
    _, errors = parse({"period": "1h", "token_file": "t"}, tmp_path)
    assert errors == ["checks[1]: token_file: must be at least 16 characters (it guards the "
                      "heartbeat URL)"]
