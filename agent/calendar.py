"""Business hours, on-call rotations and target resolution. Pure: the time is an argument.

Contract:
- `in_business_hours(hours, now)`: is the unix time `now` inside one of the
  weekly windows, read on the wall clock of `hours.tz`? Windows are wall-clock
  minutes, so "09:00-17:30" means 09:00 local in winter and in summer (zoneinfo
  does the DST arithmetic). A window runs from its start (included) to its end
  (excluded) and never crosses midnight (the config splits a night shift into
  two windows). A holiday, a local date in `hours.holidays`, is closed all day.
- `next_opening(hours, now)`: the earliest time at or after `now` at which
  business hours are open (`now` itself when they are open), looking at most
  `HORIZON_DAYS` local days ahead; None when there is no window in that time
  (no windows at all, or a year of holidays).
- `on_call(rotation, now)`: who is on call. Shift k runs from
  `start + k * shift` for `shift` *real elapsed* seconds, and contact
  `k mod len(contacts)` holds it (shifts before `start` count backwards). We
  count elapsed seconds rather than wall-clock weeks so every shift is exactly
  as long as configured and the answer is one division; the price is that a
  handover set for Monday 09:00 in winter happens at 10:00 local in summer
  (and back in winter). A rotation that must follow the wall clock should
  start on a date in the same DST period as most of its handovers.
- `resolve_targets(targets, roles, now)`: step targets (contact names and
  `role:<name>`) to contact names, in order, each once. A role with a rotation
  yields the contact on call at `now`; otherwise all its contacts. An unknown
  role is skipped: config validation rejects it, and a page to the others is
  better than none.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

from agent.policy import BusinessHours, Role, Rotation

#: How far `next_opening` looks: a year and a bit, so an annual closure still ends.
HORIZON_DAYS = 370


def in_business_hours(hours: BusinessHours, now: float) -> bool:
    local = dt.datetime.fromtimestamp(now, hours.tz)
    if local.date() in hours.holidays:
        return False
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    return any(w.weekday == local.weekday() and w.start <= minute < w.end
               for w in hours.windows)


def next_opening(hours: BusinessHours, now: float) -> float | None:
    if not hours.windows:
        return None
    if in_business_hours(hours, now):
        return now
    today = dt.datetime.fromtimestamp(now, hours.tz).date()
    for offset in range(HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        for start in sorted(w.start for w in hours.windows if w.weekday == day.weekday()):
            opens = _opening(hours, day, start)
            # in_business_hours is the one judge: it rules out holidays, and a start
            # inside a DST gap (an instant the wall clock never shows).
            if opens > now and in_business_hours(hours, opens):
                return opens
    return None


def on_call(rotation: Rotation, now: float) -> str:
    if not rotation.contacts:
        raise ValueError("a rotation needs at least one contact")
    if rotation.start.tzinfo is None:
        # A naive datetime would be read in the server's timezone: a silent shift.
        raise ValueError("rotation.start must be timezone-aware")
    shift = math.floor((now - rotation.start.timestamp()) / rotation.shift)
    return rotation.contacts[shift % len(rotation.contacts)]


def resolve_targets(targets: Sequence[str], roles: Mapping[str, Role], now: float
                    ) -> tuple[str, ...]:
    out: dict[str, None] = {}  # an ordered set
    for target in targets:
        if not target.startswith("role:"):
            out.setdefault(target)
            continue
        role = roles.get(target.removeprefix("role:"))
        if role is None:
            continue
        if role.rotation is not None and role.rotation.contacts:
            out.setdefault(on_call(role.rotation, now))
        else:
            for name in role.contacts:
                out.setdefault(name)
    return tuple(out)


def _opening(hours: BusinessHours, day: dt.date, minute: int) -> float:
    """Unix time of the local wall-clock `minute` after midnight on `day`."""
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=hours.tz)
    return local.timestamp()
