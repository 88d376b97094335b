"""Flapping: a check whose confirmed state changes too often. Pure.

Nagios's percent state change over the last 21 runs, with its weighting
(recent changes count more: weights from 0.8 for the oldest to 1.2 for the
newest) and hysteresis: flapping starts when the weighted share of changes
reaches `high` and ends only when it falls below `low`. The input is the
*confirmed* health of each run (after the quick re-checks), so a blip that
confirmation already absorbs never counts; what counts is a stream of
open/resolve pages, which is what flapping detection must replace by one
incident. Constant memory: the history is a bit mask.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNS = 21


@dataclass(frozen=True, slots=True)
class FlapParams:
    high: float = 0.25
    low: float = 0.10


@dataclass(frozen=True, slots=True)
class FlapState:
    #: Bit i set: the run i runs ago was down (bit 0 is the newest).
    bits: int = 0
    count: int = 0
    flapping: bool = False


@dataclass(frozen=True, slots=True)
class FlapStep:
    state: FlapState
    change: float
    started: bool = False
    stopped: bool = False


def percent_change(bits: int, count: int) -> float:
    """Weighted share (0..1) of state changes among the last `count` runs."""
    n = min(count, RUNS)
    if n < 2:
        return 0.0
    total = 0.0
    for i in range(n - 1):  # change between run i (newer) and run i + 1 (older)
        if ((bits >> i) ^ (bits >> (i + 1))) & 1:
            # The newest change (i = 0) weighs 1.2, the oldest possible one 0.8.
            total += 0.8 + 0.4 * (RUNS - 2 - i) / (RUNS - 2)
    return total / (RUNS - 1)


_STEADY = FlapStep(FlapState(0, RUNS, False), 0.0)


def observe(state: FlapState, down: bool, params: FlapParams = FlapParams()) -> FlapStep:
    if not down and state.bits == 0 and state.count == RUNS:
        return _STEADY  # the hot path: up for 21 runs and still up, nothing to compute
    bits = ((state.bits << 1) | int(down)) & ((1 << RUNS) - 1)
    count = min(state.count + 1, RUNS)
    change = percent_change(bits, count)
    if not state.flapping and change >= params.high:
        return FlapStep(FlapState(bits, count, True), change, started=True)
    if state.flapping and change < params.low:
        return FlapStep(FlapState(bits, count, False), change, stopped=True)
    return FlapStep(FlapState(bits, count, state.flapping), change)
