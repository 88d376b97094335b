"""Business hours, next opening, on-call rotation and target resolution (Europe/London)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.calendar import in_business_hours, next_opening, on_call, resolve_targets
from agent.policy import BusinessHours, Opening, Role, Rotation

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC
WEEKDAYS = tuple(Opening(d, 9 * 60, 17 * 60 + 30) for d in range(5))  # mon-fri 09:00-17:30
HOURS = BusinessHours(LONDON, (*WEEKDAYS, Opening(5, 10 * 60, 14 * 60)),  # + sat 10:00-14:00
                      frozenset({dt.date(2024, 3, 29), dt.date(2024, 12, 25)}))
OFFICE = BusinessHours(LONDON, WEEKDAYS)


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0,
       tz: dt.tzinfo = LONDON) -> float:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp()


@pytest.mark.parametrize(("when", "is_open"), [
    (dt.datetime(2024, 3, 5, 10, 0), True),           # Tuesday morning
    (dt.datetime(2024, 3, 5, 8, 59, 59), False),      # a second before opening
    (dt.datetime(2024, 3, 5, 9, 0), True),            # the opening minute is included
    (dt.datetime(2024, 3, 5, 17, 29, 59), True),
    (dt.datetime(2024, 3, 5, 17, 30), False),         # the end is excluded
    (dt.datetime(2024, 3, 9, 11, 0), True),           # Saturday window
    (dt.datetime(2024, 3, 9, 14, 0), False),
    (dt.datetime(2024, 3, 10, 11, 0), False),         # Sunday: no window
    (dt.datetime(2024, 3, 29, 10, 0), False),         # Good Friday: a holiday, closed all day
    (dt.datetime(2024, 12, 25, 12, 0), False),
    (dt.datetime(2024, 7, 2, 9, 30), True),           # summer (BST): wall clock, not UTC
    (dt.datetime(2024, 7, 2, 8, 30), False),
])
def test_business_hours_windows_and_holidays(when: dt.datetime, is_open: bool) -> None:
    # `when` is London wall-clock time.
    assert in_business_hours(HOURS, when.replace(tzinfo=LONDON).timestamp()) is is_open


def test_business_hours_follow_the_wall_clock_across_dst() -> None:
    # 08:30 UTC is 09:30 BST (open) after the spring change, 08:30 GMT (closed) before it
    # and again after the autumn change.
    assert in_business_hours(OFFICE, ts(2024, 4, 1, 8, 30, tz=UTC))
    assert not in_business_hours(OFFICE, ts(2024, 3, 25, 8, 30, tz=UTC))
    assert not in_business_hours(OFFICE, ts(2024, 10, 28, 8, 30, tz=UTC))
    assert in_business_hours(OFFICE, ts(2024, 10, 25, 8, 30, tz=UTC))


def test_a_window_may_run_to_midnight() -> None:
    late = BusinessHours(LONDON, (Opening(0, 20 * 60, 24 * 60),))
    assert in_business_hours(late, ts(2024, 3, 4, 23, 59, 59))
    assert not in_business_hours(late, ts(2024, 3, 5, 0, 0))
    assert next_opening(late, ts(2024, 3, 4, 12, 0)) == ts(2024, 3, 4, 20, 0)


def test_next_opening_is_now_while_open() -> None:
    now = ts(2024, 3, 5, 11, 0)
    assert next_opening(OFFICE, now) == now


def test_next_opening_later_the_same_day() -> None:
    assert next_opening(OFFICE, ts(2024, 3, 5, 7, 0)) == ts(2024, 3, 5, 9, 0)


def test_next_opening_across_a_weekend() -> None:
    assert next_opening(OFFICE, ts(2024, 3, 8, 18, 0)) == ts(2024, 3, 11, 9, 0)
    # With a Saturday window the wait is shorter.
    assert next_opening(HOURS, ts(2024, 3, 8, 18, 0)) == ts(2024, 3, 9, 10, 0)


def test_next_opening_skips_a_holiday() -> None:
    # Thursday evening before Good Friday: the next opening is Saturday's window.
    assert next_opening(HOURS, ts(2024, 3, 28, 18, 0)) == ts(2024, 3, 30, 10, 0)


def test_next_opening_across_the_spring_dst_change() -> None:
    # Saturday 30 March 2024, 22:00 GMT; clocks go forward on Sunday 31 March.
    got = next_opening(OFFICE, ts(2024, 3, 30, 22, 0))
    assert got == ts(2024, 4, 1, 9, 0) == ts(2024, 4, 1, 8, 0, tz=UTC)


def test_next_opening_across_the_autumn_dst_change() -> None:
    # Saturday 26 October 2024, 22:00 BST; clocks go back on Sunday 27 October.
    got = next_opening(OFFICE, ts(2024, 10, 26, 22, 0))
    assert got == ts(2024, 10, 28, 9, 0) == ts(2024, 10, 28, 9, 0, tz=UTC)


def test_next_opening_without_windows_is_none() -> None:
    assert next_opening(BusinessHours(LONDON), ts(2024, 3, 5, 7, 0)) is None
    start = dt.date(2024, 3, 5)
    closed_for_good = BusinessHours(LONDON, WEEKDAYS, frozenset(
        start + dt.timedelta(days=d) for d in range(400)))
    assert next_opening(closed_for_good, ts(2024, 3, 5, 7, 0)) is None


ROTA = Rotation(("alice", "bob", "carol"), dt.datetime(2024, 3, 4, 9, 0, tzinfo=LONDON))
WEEK = 7 * 86400


@pytest.mark.parametrize(("offset", "who"), [
    (0, "alice"),
    (WEEK - 1, "alice"),
    (WEEK, "bob"),
    (2 * WEEK + 3600, "carol"),
    (3 * WEEK, "alice"),       # cyclic
    (-1, "carol"),             # before the start, counted backwards
])
def test_on_call_across_shifts(offset: float, who: str) -> None:
    assert on_call(ROTA, ROTA.start.timestamp() + offset) == who


def test_on_call_counts_real_seconds_across_dst() -> None:
    # Started Monday 25 March 09:00 GMT; a week later the clocks say BST, and the
    # handover (counted in elapsed seconds) happens at 10:00 local.
    rota = Rotation(("alice", "bob"), dt.datetime(2024, 3, 25, 9, 0, tzinfo=LONDON))
    assert on_call(rota, ts(2024, 4, 1, 9, 30)) == "alice"
    assert on_call(rota, ts(2024, 4, 1, 10, 0)) == "bob"


def test_on_call_with_a_short_shift() -> None:
    rota = Rotation(("alice", "bob"), dt.datetime(2024, 3, 4, 9, 0, tzinfo=LONDON), shift=3600)
    assert [on_call(rota, ts(2024, 3, 4, h, 15)) for h in (9, 10, 11)] == ["alice", "bob",
                                                                          "alice"]


def test_on_call_rejects_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        on_call(Rotation(("alice",), dt.datetime(2024, 3, 4, 9, 0)), 0.0)


ROLES = {
    "frontline": Role("frontline", ("zoe",), rotation=ROTA),
    "ops": Role("ops", ("alice", "carol")),
    "owner": Role("owner", ("dave",)),
}


def test_resolve_targets_keeps_order_and_drops_duplicates() -> None:
    now = ROTA.start.timestamp() + 10  # alice on call
    got = resolve_targets(["role:ops", "dave", "role:frontline", "carol", "role:owner"],
                          ROLES, now)
    assert got == ("alice", "carol", "dave")


def test_resolve_targets_uses_the_rotation_not_the_role_contacts() -> None:
    now = ROTA.start.timestamp() + WEEK + 10  # bob on call
    assert resolve_targets(["role:frontline"], ROLES, now) == ("bob",)


def test_resolve_targets_skips_an_unknown_role() -> None:
    assert resolve_targets(["role:nobody", "erin"], ROLES, 0.0) == ("erin",)
