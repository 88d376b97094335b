"""Reports and reviews from a known history, built on a fake clock with the real
runner, engine and store; deliveries are recorded the way the outbox records them.

Every figure of the review is checked against what the history holds, and
the report of one scripted incident is compared with a golden Markdown file
(`tests/golden/report_shop.md`; regenerate with ONWATCH_GOLDEN=write).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from agent.config import Config, load
from agent.engine import Engine
from agent.incidents import TimelineEntry, Transition
from agent.metrics import Metrics
from agent.report.document import render_html, render_markdown
from agent.report.incident import incident_report
from agent.report.load import facts_between, facts_of
from agent.report.review import review
from agent.report.review_doc import review_document, review_json
from agent.runner import Runner
from agent.store.sqlite import Store
from agent.vocab import Entry, Via
from checks.result import CheckResult, ErrorKind
from tests.support import onwatch

GOLDEN = Path(__file__).parent / "golden" / "report_shop.md"


def utc(*a: int) -> float:
    return dt.datetime(*a, tzinfo=dt.UTC).timestamp()


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


CONFIG = """
[agent]
state_dir = "st"
timezone = "Europe/London"
[business_hours]
hours = ["mon-fri 09:00-17:00"]
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/a"]
[[contacts]]
name = "bob"
urls = ["json://127.0.0.1:9/b"]
[[policies]]
name = "std"
ack_timeout = "10m"
[[policies.steps]]
notify = ["alice"]
[[policies.steps]]
after = "10m"
notify = ["bob"]
[defaults]
policy = "std"
confirm = 1
recover = 1
[[checks]]
name = "shop"
type = "tcp"
host = "127.0.0.1"
port = 1
severity = "critical"
[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = 2
severity = "low"
"""


class World:
    def __init__(self, tmp: Path) -> None:
        (tmp / "c.toml").write_text(CONFIG)
        self.cfg: Config = load(tmp / "c.toml")
        self.store = Store.open(self.cfg.agent.state_dir)
        self.clock = Clock()
        self.engine = Engine(self.cfg, self.store, Metrics(), b"k" * 32, self.clock)
        self.runner = Runner(self.cfg, self.engine, self.engine.metrics, self.clock)

    def result(self, name: str, ok: bool, at: float) -> None:
        self.clock.now = at
        check = self.cfg.check(name)
        assert check is not None
        res = (CheckResult(True, 0.01, "ok", None, at) if ok else
               CheckResult(False, 0.0, "connection refused", ErrorKind.CONNECT, at))
        self.runner.on_result(check, res, 0.0)

    def tick(self, at: float) -> None:
        """What the engine's timer loop does at `at`: plan every incident that is due."""
        self.clock.now = at
        for live in list(self.engine._live.values()):
            if live.wake_at is not None and live.wake_at <= at:
                self.engine.apply(Transition(live.incident, (), None), live.state)

    def deliver_all(self, after: float = 2.0) -> None:
        """Mark every due message delivered `after` seconds after it was queued."""
        for m in self.store.due_messages(10**12):
            at = m.created_at + after
            with self.store.tx():
                self.store.update_message(m.id, status="delivered", attempts=1,
                                          next_attempt_at=at, delivered_at=at, last_error=None)
                assert m.incident_id is not None
                self.store.append(m.incident_id, [TimelineEntry(
                    at, Entry.NOTIFICATION_DELIVERED, m.contact, f"{m.event} delivered",
                    {"message_id": m.id, "channels": [CHANNEL]})])


CHANNEL = {"channel": "json://127.0.0.1:9/...", "ok": True, "detail": "delivered"}
MON = utc(2026, 11, 23, 10, 0)  # Monday 10:00 GMT, business hours


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    # 1. shop, critical, in business hours: alice acknowledges after 3 minutes, bob resolves.
    w.result("shop", True, MON - 60)
    w.result("shop", False, MON)
    w.deliver_all()
    w.clock.now = MON + 180
    w.engine.acknowledge(1, by="alice", via=Via.LINK)
    w.clock.now = MON + 1800
    w.engine.resolve(1, by="bob", cause="the router lost its uplink", fix="rebooted the router")
    w.engine.add_action(1, text="Add a second uplink", owner="bob", by="alice")
    # 2..4. pos, low, three nights: nobody answers; bob is paged at +10 min; it recovers.
    for night in range(3):
        t = utc(2026, 11, 24 + night, 2, 0)  # Tue, Wed, Thu 02:00 GMT
        for k in range(21):  # a steady day in between: one outage a night is not flapping
            w.result("pos", True, t - 3600 + k * 60)
        w.result("pos", False, t)
        w.tick(t + 600)
        w.result("pos", True, t + 240 + 600)
    w.deliver_all()
    return w


def test_the_review_counts_what_the_store_holds(world: World) -> None:
    since, until = utc(2026, 11, 23), utc(2026, 11, 30)
    facts = facts_between(world.store, since, until, until)
    r = review(facts, checks=["shop", "pos"], since=since, until=until, tz=world.cfg.agent.tz,
               hours=world.cfg.escalation.hours, open_actions=world.store.actions(open_only=True))
    week = until - since
    assert r.incidents == 4
    shop, pos = r.checks
    assert (shop.check, shop.incidents, shop.outages) == ("shop", 1, 1)
    assert shop.downtime_s == 1800 and shop.uptime == pytest.approx(1 - 1800 / week)
    assert (shop.mean_tta, shop.worst_tta, shop.mean_ttr, shop.worst_ttr) == (180, 180, 1800, 1800)
    assert (pos.check, pos.incidents, pos.outages) == ("pos", 3, 3)
    assert pos.downtime_s == 3 * 840 and pos.uptime == pytest.approx(1 - 2520 / week)
    assert (pos.mean_tta, pos.worst_tta) == (None, None)
    assert (pos.mean_ttr, pos.worst_ttr) == (840, 840)
    assert pos.short_self_resolved == 0  # 14 minutes is not short
    assert r.tiers == {1: 1, 2: 3} and r.past_first == 3
    people = {p.contact: (p.pages, p.at_night, p.outside_hours) for p in r.people}
    assert people == {"alice": (4, 3, 3), "bob": (3, 3, 3)}
    assert r.unanswered_pages == 6 and r.unanswered_incidents == [2, 3, 4]
    assert [(a.id, a.owner) for a in r.open_actions] == [(1, "bob")]
    text = " ".join(r.suggestions)
    assert "alice got 3 pages at night for `pos` (low severity)" in text
    assert "bob got 3 pages at night for `pos`" in text
    assert "past the first person in 3 of 4 paged incidents" in text
    assert "6 page(s) in 3 incident(s) were never acknowledged" in text
    data = json.loads(json.dumps(review_json(r)))
    assert data["checks"][0]["downtime_s"] == 1800 and data["escalated_past_first"] == 3
    md = render_markdown(review_document(r, world.cfg.agent.tz, now=until))
    assert "| pos | 3 |" in md and "Pages per person" in md


def test_short_self_resolved_incidents_are_noise(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = MON
    for i in range(4):
        for k in range(21):
            w.result("pos", True, t + i * 3600 - 2000 + k * 60)
        w.result("pos", False, t + i * 3600 + 10)
        w.result("pos", True, t + i * 3600 + 70)
    facts = facts_between(w.store, MON - 1, MON + 86400, MON + 86400)
    r = review(facts, checks=["pos"], since=MON - 1, until=MON + 86400, tz=w.cfg.agent.tz)
    assert r.checks[0].short_self_resolved == 4
    assert any("`pos` opened 4 short incidents" in s for s in r.suggestions)


def test_the_report_of_one_incident_reads_like_a_document(world: World) -> None:
    inc = world.store.incident(1)
    assert inc is not None
    from agent.report.load import report_context
    doc = incident_report(facts_of(world.store, inc, MON + 3600),
                          report_context(world.cfg, inc, world.store), now=MON + 3600)
    md = render_markdown(doc)
    if os.environ.get("ONWATCH_GOLDEN") == "write":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(md)
    assert md == GOLDEN.read_text()
    html = render_html(doc)
    assert "<h2>Escalation path</h2>" in html and "the router lost its uplink" in html


def test_report_and_review_from_the_cli(world: World, tmp_path: Path) -> None:
    cfg = str(world.cfg.source)
    world.store.close()
    out = onwatch("report", "1", "--config", cfg)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# Incident #1: shop is down")
    assert "| **Cause** | the router lost its uplink |" in out.stdout
    page = tmp_path / "r.html"
    assert onwatch("report", "1", "--format", "html", "--out", str(page),
                   "--config", cfg).returncode == 0
    assert "<table" in page.read_text()
    rv = onwatch("review", "--since", "3650d", "--format", "json", "--config", cfg)
    assert rv.returncode == 0, rv.stderr
    assert json.loads(rv.stdout)["incidents"] == 4
    missing = onwatch("report", "99", "--config", cfg)
    assert missing.returncode == 1 and "no incident #99" in missing.stderr
    listed = onwatch("action", "list", "--config", cfg)
    assert "Add a second uplink" in listed.stdout


async def test_prevention_actions_through_the_running_agent(tmp_path: Path) -> None:
    from tests.support import start_agent

    state = tmp_path / "state"
    agent = await start_agent(f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/a"]
[[policies]]
name = "std"
[[policies.steps]]
notify = ["alice"]
[defaults]
policy = "std"
""", tmp_path)
    try:
        out = await agent.cli("declare", "--title", "card terminal stuck", "--policy", "std")
        assert out.returncode == 0, out.stderr
        add = await agent.cli("action", "add", "1", "Replace", "the", "terminal", "--owner", "bob")
        assert add.returncode == 0 and "prevention action #1 added" in add.stdout, add.stderr
        assert (await agent.cli("action", "add", "7", "x", "--owner", "bob")).returncode == 1
        done = await agent.cli("action", "done", "1", "--by", "bob")
        assert done.returncode == 0, done.stderr
        again = await agent.cli("action", "done", "1")
        assert again.returncode == 1 and "already done" in again.stderr
        listed = await agent.cli("action", "list")
        assert "Replace the terminal" in listed.stdout and "done by bob" in listed.stdout
        shown = await agent.cli("show", "1")
        assert "action_added" in shown.stdout and "action_done" in shown.stdout
    finally:
        await agent.stop()
