"""Outage detection for one check: confirm a failure, confirm a recovery. Pure.

`observe(state, result, confirm=, recover=, now=)` returns the next state, the
`Signal` to act on (down / up) if any, and whether the scheduler should
re-check quickly instead of waiting a whole interval.

Why quick re-checks: with a 60 s interval and 3 confirmations, waiting whole
intervals pages after three minutes. Instead the first failure of an up
check triggers re-checks `recheck_interval` apart; the check is down after
`confirm` consecutive failures, so a real outage pages within
(time to the next scheduled run) + (confirm - 1) x (recheck_interval + timeout),
while a single blip is absorbed by the first successful re-check.
Recovery is confirmed the same way with `recover` consecutive successes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from checks.result import CheckResult, ErrorKind


class Health(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class OutageState:
    health: Health = Health.UNKNOWN
    #: When the current health began (for "down since").
    since: float = 0.0
    #: Consecutive failed runs while not (yet) down.
    fails: int = 0
    #: Consecutive successful runs while down.
    oks: int = 0
    #: When the current failure streak began: an outage starts at its first failure.
    first_fail_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Signal:
    kind: Health  # DOWN or UP
    check: str
    at: float
    #: For DOWN, when the first failure of the streak was seen; for UP, when the outage began.
    since: float
    reason: str
    error_kind: ErrorKind | None


@dataclass(frozen=True, slots=True)
class OutageStep:
    state: OutageState
    signal: Signal | None = None
    recheck: bool = False


def observe(state: OutageState, check: str, result: CheckResult, *, confirm: int, recover: int,
            now: float) -> OutageStep:
    if result.ok:
        return _on_success(state, check, result, recover, now)
    return _on_failure(state, check, result, confirm, now)


def _on_success(state: OutageState, check: str, result: CheckResult, recover: int, now: float
                ) -> OutageStep:
    if state.health is Health.UP:
        # The hot path: an up check stays up. Reuse the state, allocate nothing.
        return OutageStep(state) if state.fails == 0 else OutageStep(replace(state, fails=0))
    if state.health is Health.UNKNOWN:
        return OutageStep(OutageState(Health.UP, now))
    oks = state.oks + 1
    if oks < recover:
        return OutageStep(replace(state, oks=oks), recheck=True)
    signal = Signal(Health.UP, check, now, state.since, result.reason, None)
    return OutageStep(OutageState(Health.UP, now), signal)


def _on_failure(state: OutageState, check: str, result: CheckResult, confirm: int, now: float
                ) -> OutageStep:
    if state.health is Health.DOWN:
        return OutageStep(replace(state, oks=0)) if state.oks else OutageStep(state)
    fails = state.fails + 1
    first = now if fails == 1 else state.first_fail_at
    if fails < confirm:
        return OutageStep(replace(state, fails=fails, first_fail_at=first), recheck=True)
    signal = Signal(Health.DOWN, check, now, first, result.reason, result.error_kind)
    return OutageStep(OutageState(Health.DOWN, first, 0, 0, first), signal)


def restored_down(since: float) -> OutageState:
    """The state of a check whose incident was open when the agent stopped."""
    return OutageState(Health.DOWN, since, 0, 0, since)
