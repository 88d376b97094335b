"""Changes and trends from observations: pure rules, then through the real runner."""

from __future__ import annotations

from agent.detect.observations import ObsState, Rules, observe
from checks.result import CheckResult
from tests.test_suppression import Clock, utc, world  # noqa: F401  (the fixture)


def kinds(seq: list[dict[str, float]]) -> list[list[tuple[str, str]]]:
    st = ObsState()
    return [[(s.kind, s.severity) for s in observe(st, obs, Rules())] for obs in seq]


def test_first_fingerprint_is_learned_then_a_change_is_critical() -> None:
    fp = "content_fingerprint"
    assert kinds([{fp: 1.0}, {fp: 1.0}, {fp: 2.0}, {fp: 2.0}]) == [
        [], [], [("changed", "critical")], []]


def test_certificate_expiry_warns_escalates_and_clears() -> None:
    k = "cert_days_left"
    assert kinds([{k: 60}, {k: 20}, {k: 19}, {k: 6}, {k: 90}]) == [
        [], [("expiring", "low")], [], [("expiring", "high")], [("renewed", "low")]]


def test_disk_fill_forecast_with_hysteresis() -> None:
    k = "disk_hours_to_full:/var"
    assert kinds([{k: 100}, {k: 20}, {k: 30}, {k: 47}, {k: 60}]) == [
        [], [("filling", "high")], [], [], [("fill_ok", "low")]]


def test_through_the_runner(world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    runner, store, clock, cfg = world
    check = cfg.check("router")
    assert check is not None
    t = utc(2026, 11, 24, 12, 0)
    for i, obs in enumerate([{"cert_fingerprint": 5.0, "cert_days_left": 30.0},
                             {"cert_fingerprint": 6.0, "cert_days_left": 20.0},
                             {"cert_fingerprint": 7.0, "cert_days_left": 5.0}]):
        clock.now = t + 60 * i
        runner.on_result(check, CheckResult(True, 0.01, "ok", None, clock.now, obs), 0.0)
    incs = {i.kind: i for i in store.incidents()}
    assert set(incs) == {"changed", "expiring"}
    assert incs["changed"].severity == "critical"
    assert incs["changed"].title == "router changed unexpectedly"
    assert any("changed again" in e.message for e in store.timeline(incs["changed"].id))
    assert incs["expiring"].severity == "high"  # raised from low
    assert "severity_changed" in [e.kind for e in store.timeline(incs["expiring"].id)]
    assert store.messages(incs["changed"].id)[0].title.startswith("[CHANGED] router")


def test_disk_forecast_from_the_host_probe_observations() -> None:
    st = ObsState()
    free, rate = "disk_free_bytes:/var", "disk_fill_rate_bytes_per_s:/var"
    # 10 GB free, filling at 200 kB/s: full in ~14 h, under the 24 h horizon.
    got = observe(st, {free: 10e9, rate: 200e3}, Rules())
    assert [(s.kind, s.key) for s in got] == [("filling", "disk_hours_to_full:/var")]
    assert "full in about 13.9 hours" in got[0].reason
    assert [s.kind for s in observe(st, {free: 10e9, rate: 0.0}, Rules())] == ["fill_ok"]
