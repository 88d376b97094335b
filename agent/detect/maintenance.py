"""Maintenance windows: when a check pages nobody. Pure; the time is an argument.

A window covers checks by name or by tag. One-off windows have a start and an
end (from the config, or opened with `onwatch maintenance start ... --for 2h`);
recurring ones are weekly, in the business's time zone, written like business
hours ("sun 02:00-04:00") and evaluated on the local wall clock, so they stay
at 02:00 local across a daylight-saving change. During a window checks still
run and are recorded; no incident opens. When it ends, a check that is still
down opens its incident and pages once (the runner does that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.calendar import in_business_hours
from agent.policy import BusinessHours


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    id: str
    checks: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    start: float | None = None
    end: float | None = None
    #: Recurring weekly windows (the business-hours machinery, reused).
    weekly: BusinessHours | None = None
    reason: str = ""

    def covers(self, check: str, tags: Iterable[str]) -> bool:
        return check in self.checks or not self.tags.isdisjoint(tags)

    def active(self, now: float) -> bool:
        if self.weekly is not None:
            return in_business_hours(self.weekly, now)
        return (self.start or 0.0) <= now < (self.end if self.end is not None else 0.0)


def active_window(windows: Iterable[MaintenanceWindow], check: str, tags: Iterable[str], now: float
                  ) -> MaintenanceWindow | None:
    tags = tuple(tags)
    return next((w for w in windows if w.covers(check, tags) and w.active(now)), None)
