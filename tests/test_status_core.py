"""The status page's core, without a daemon: config, component states, notices (customer
wording only), the uptime rollup, the rendered page's size, JSON, feed and badge."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent import pages
from agent.config import Config, ConfigError, parse
from agent.detect.maintenance import MaintenanceWindow as Window
from agent.incidents import Incident, State
from agent.pages import status_routes
from agent.status import view
from agent.status.notices import NoticeError, Publisher, opening_text
from agent.status.uptime import DOWN, MAINT, UP, Rollup, day_bounds
from agent.store.status import StatusStore
from agent.vocab import Change, ComponentState
from tests.pg import Opener

TZ = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 12, 1, 15, 0, tzinfo=TZ).timestamp()


def raw(tmp_path: Path, **status: Any) -> dict[str, Any]:
    return {
        "agent": {"state_dir": str(tmp_path / "state"), "timezone": "Europe/Paris"},
        "checks": [
            {"name": "web-1", "type": "tcp", "host": "127.0.0.1", "port": 1, "tags": ["web"]},
            {"name": "web-2", "type": "tcp", "host": "127.0.0.1", "port": 2, "tags": ["web"]},
            {"name": "pos", "type": "tcp", "host": "127.0.0.1", "port": 3},
        ],
        "status": {"title": "Corner Shop", "components": [
            {"name": "Online shop", "tags": ["web"], "group": "Website"},
            {"name": "Card payments in store", "checks": ["pos"], "notice": "manual"},
        ], **status},
    }


def load(tmp_path: Path, **status: Any) -> Config:
    return parse(raw(tmp_path, **status), tmp_path / "c.toml")


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(data, tmp_path / "c.toml")
    return exc.value.problems


def test_components_by_tag_and_name(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    shop, pos = cfg.status.components
    assert (shop.slug, shop.checks, shop.group, shop.notice) == (
        "online-shop", ("web-1", "web-2"), "Website", "auto")
    assert (pos.slug, pos.checks, pos.notice) == ("card-payments-in-store", ("pos",), "manual")
    assert cfg.status.by_check["web-2"] == (shop,)
    assert cfg.web.public_listen is None


def test_config_problems_are_named(tmp_path: Path) -> None:
    data = raw(tmp_path)
    data["web"] = {"public_listen": "everywhere"}
    data["status"]["components"] += [{"name": "Mail", "checks": ["nope"], "tags": ["x"]},
                                     {"name": "Online shop", "checks": ["pos"]},
                                     {"name": "Empty", "notice": "later"}]
    data["status"]["email"] = {"from": "not-an-address", "username": "u"}
    data["status"]["logo"] = "missing.png"
    assert problems(tmp_path, data) == [
        'web: public_listen: must be host:port like "0.0.0.0:8080" or "[::]:8080", got '
        '"everywhere"',
        f"status: logo: cannot read {tmp_path}/missing.png: No such file or directory",
        'status.components[2] "Mail": checks: no check named "nope"',
        'status.components[2] "Mail": tags: no check has the tag "x"',
        'status.components[3] "Online shop": name: duplicate component name "Online shop" '
        "(names must differ)",
        'status.components[4] "Empty": name the checks that make it (checks = [...] or '
        "tags = [...])",
        'status.components[4] "Empty": notice: must be one of auto, manual; got "later"',
        'status.email: from: must be an e-mail address, got "not-an-address"',
        "status.email: password: is required with username (or password_file)",
    ]


def inc(iid: int, check: str, kind: str = "outage", state: State = State.OPEN) -> Incident:
    return Incident(iid, check, f"{check} is down", "high", state,
                    "connection refused by 10.0.0.7:5432", NOW - 60, NOW - 70, kind=kind)


@pytest.mark.parametrize(("incidents", "windows", "want"), [
    ([], [], ComponentState.OPERATIONAL),
    ([inc(1, "web-1")], [], ComponentState.PARTIAL_OUTAGE),
    ([inc(1, "web-1"), inc(2, "web-2")], [], ComponentState.MAJOR_OUTAGE),
    ([inc(1, "web-1", "degraded")], [], ComponentState.DEGRADED),
    ([inc(1, "web-1", "expiring")], [], ComponentState.OPERATIONAL),  # not customer-visible
    ([], [Window("w", tags=frozenset({"web"}), start=NOW - 1, end=NOW + 60)],
     ComponentState.UNDER_MAINTENANCE),
    ([inc(1, "web-1")], [Window("w", tags=frozenset({"web"}), start=NOW - 1, end=NOW + 60)],
     ComponentState.PARTIAL_OUTAGE),
])
def test_component_state(tmp_path: Path, incidents: list[Incident], windows: list[Window],
                         want: ComponentState) -> None:
    cfg = load(tmp_path)
    tags = {c.name: c.tags for c in cfg.checks}
    assert view.state_of(cfg.status.components[0], incidents, windows, tags, NOW) is want


@pytest.fixture
def store(store_opener: Opener) -> Any:
    """The status tables on both stores (tests/pg.py)."""
    yield StatusStore(store_opener())


def test_notices_use_customer_words_only(tmp_path: Path, store: StatusStore) -> None:
    cfg = load(tmp_path)
    pub = Publisher(cfg, store, b"k" * 32, lambda: NOW)
    shop, pos = inc(1, "web-1"), inc(2, "pos")
    for i in (shop, pos):
        with store.store.tx():
            store.store.save_incident(i)
    with store.store.tx():
        pub.on_incident(shop, Change.OPENED, NOW)
        pub.on_incident(pos, Change.OPENED, NOW)  # manual: waits for a person
        pub.on_incident(inc(3, "web-1", "expiring"), Change.OPENED, NOW)  # not public
    assert [n.text for n in store.notices()] == [opening_text("outage", cfg.status.components[:1])]
    assert store.notices()[0].components == ("online-shop",)
    with store.store.tx():
        pub.on_incident(pos, Change.RESOLVED, NOW + 1)  # nothing was said: nothing to close
    assert len(store.notices()) == 1
    pub.post_update(2, "Card readers are restarting.", "sam")
    with store.store.tx():
        pub.on_incident(pos, Change.RESOLVED, NOW + 2)
    kinds = [(n.incident_id, n.kind) for n in store.notices()]
    assert kinds == [(2, "closing"), (2, "update"), (1, "opening")]
    text = " ".join(n.text for n in store.notices())
    for internal in ("web-1", "pos ", "10.0.0.7", "refused", "5432"):
        assert internal not in text
    with pytest.raises(NoticeError, match="no incident #9"):
        pub.post_update(9, "x", "sam")
    with pytest.raises(NoticeError, match="empty"):
        pub.post_update(1, "  ", "sam")


def test_rollup_splits_at_local_midnight_and_ignores_gaps(store: StatusStore) -> None:
    r = Rollup(store, TZ)
    _, _, midnight = day_bounds(NOW, TZ)
    r.record("a", UP, midnight - 30, 60)
    r.record("a", DOWN, midnight + 30, 60)  # 30 s up before midnight, 30 s up after
    r.record("a", MAINT, midnight + 60, 60)  # 30 s down
    r.record("a", UP, midnight + 90, 60)  # 30 s maintenance
    r.record("a", UP, midnight + 9000, 60)  # a gap (agent stopped): not counted
    assert r.flush(midnight + 9000) == 2
    days = store.uptime("2026-01-01")["a"]
    assert days == {"2026-12-01": (30.0, 0.0, 0.0), "2026-12-02": (30.0, 30.0, 30.0)}


def test_rollup_stays_about_one_row_per_check_and_day(store: StatusStore) -> None:
    r = Rollup(store, TZ)
    for k in range(3 * 1440):  # three days of one run a minute
        r.record("a", UP if k % 50 else DOWN, NOW + 60 * k, 60)
        if k % 100 == 0:
            r.flush(NOW + 60 * k)
    r.flush(NOW + 3 * 86400)
    rows = store.store.db.execute("SELECT COUNT(*) FROM uptime_daily").fetchone()[0]
    assert rows == 4  # today, two whole days, and the fourth day's start


def big_view(tmp_path: Path, components: int = 20) -> tuple[Config, view.StatusView]:
    data = raw(tmp_path)
    data["checks"] = [{"name": f"c{i}", "type": "tcp", "host": "127.0.0.1", "port": 1}
                      for i in range(components * 25)]
    data["status"]["components"] = [
        {"name": f"Service number {i}", "checks": [f"c{j}" for j in range(i * 25, i * 25 + 25)],
         "group": f"Group {i % 4}", "description": "What customers use this for"}
        for i in range(components)]
    cfg = parse(data, tmp_path / "c.toml")
    days = view.dates(90, TZ, NOW)
    # The worst case for size: classes alternating day by day, a bad day every week.
    uptime = {f"c{j}": {d: (86000.0, 9000.0 if k % 7 == 0 else 400.0 * (k % 2), 0.0)
                        for k, d in enumerate(days)} for j in range(components * 25)}
    v = view.build(cfg.status, TZ, incidents=[inc(1, "c0")], notices=[],
                   bars=view.bars(cfg.status, uptime, days), windows=[], tags={}, now=NOW)
    return cfg, v


def test_page_stays_small_with_20_components_and_90_days_each(tmp_path: Path) -> None:
    _, v = big_view(tmp_path)
    groups = [(g, [status_routes._segments(c) for c in comps]) for g, comps in v.groups]
    html = pages.render("status.html", v=v, components=groups, patterns=status_routes.PATTERNS,
                        email=True, site_title="Corner Shop", has_logo=False, tz="Europe/Paris",
                        iso=view.iso)
    assert len(html.encode()) < 50_000, len(html.encode())
    assert "<script" not in html and 'label for="email"' in html
    assert v.components[0].state is ComponentState.PARTIAL_OUTAGE
    assert [d.css for d in v.components[0].days[:3]] == ["major", "minor", "ok"]


def test_badge_and_feed_are_well_formed(tmp_path: Path) -> None:
    svg = pages.render("badge.svg", left="Online <shop>", right="major outage", w1=90, w2=80,
                       colour="#cf222e")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and "Online <shop>" in "".join(
        root.itertext())
    feed = pages.render("feed.atom", base="https://status.example", updated="2026-12-01T14:00Z",
                        site_title="Corner & Co", entries=[{
                            "key": "1", "id": 3, "title": "Investigating: Problem with x",
                            "iso": "2026-12-01T14:00Z", "text": "a < b"}])
    atom = ET.fromstring(feed.encode())
    ns = "{http://www.w3.org/2005/Atom}"
    assert atom.find(f"{ns}title").text == "Corner & Co status"  # type: ignore[union-attr]
    assert atom.find(f"{ns}entry/{ns}content").text == "a < b"  # type: ignore[union-attr]


def test_maintenance_is_announced_ahead_once_with_its_window(tmp_path: Path,
                                                             store: StatusStore) -> None:
    cfg = load(tmp_path)
    pub = Publisher(cfg, store, b"k" * 32, lambda: NOW)
    start = NOW + 2 * 86400
    soon = Window("config:0", tags=frozenset({"web"}), start=start, end=start + 7200,
                  reason="swap the database disk")  # staff words: never shown
    later = Window("config:1", checks=frozenset({"pos"}), start=NOW + 30 * 86400,
                   end=NOW + 30 * 86400 + 60)
    assert pub.announce([soon, later], NOW) == 1
    assert pub.announce([soon, later], NOW + 60) == 0  # announced once
    (n,) = store.notices()
    assert n.kind == "maintenance" and n.components == ("online-shop",)
    assert n.text == ("Scheduled maintenance: Online shop may be unavailable from "
                      "Thu 3 Dec 2026, 15:00 CET to Thu 3 Dec 2026, 17:00 CET.")
    tags = {c.name: c.tags for c in cfg.checks}
    v = view.build(cfg.status, TZ, incidents=[], notices=store.notices(), bars={},
                   windows=[soon, later], tags=tags, now=NOW)
    assert [m.components for m in v.maintenance] == [("Online shop",)]
    assert v.history[0].title == "Scheduled maintenance: Online shop"
    assert "disk" not in str(v)


def test_reload_keeps_the_status_page_until_a_restart(tmp_path: Path) -> None:
    from agent import reload

    old = load(tmp_path)
    new = load(tmp_path, title="Another name")
    assert "status" in reload.diff(old, new).needs_restart
    assert reload.keep_start_settings(old, new).status == old.status


def test_today_shows_an_outage_going_on_before_the_rollup_counts_it(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    days = view.dates(90, TZ, NOW)
    uptime = {"web-1": {days[-1]: (3600.0, 0.0, 0.0)}, "web-2": {days[-1]: (3600.0, 0.0, 0.0)}}
    v = view.build(cfg.status, TZ, incidents=[inc(1, "web-1"), inc(2, "web-2")], notices=[],
                   bars=view.bars(cfg.status, uptime, days), windows=[], tags={}, now=NOW)
    shop = v.components[0]
    assert shop.state is ComponentState.MAJOR_OUTAGE and shop.days[-1].css == "major"
    assert status_routes._segments(shop)["marks"][0]["title"] == "Tue 1 Dec: a problem going on"
