"""The agent's clock: wall-clock readings that advance with the monotonic clock.

Escalation steps, retries, storm bundles and heartbeat deadlines are all "so many
seconds after something". Measured with `time.time()`, a wall-clock step (an NTP
correction, a VM restored from a snapshot, an operator's `date -s`) moves them: a
step back of an hour delayed every escalation by an hour; a step forward fired
them all at once and faked missed heartbeats.

`SteadyClock()` reads the wall clock once, at start, and from then on adds the
monotonic time elapsed: a step of the wall clock changes nothing the agent waits
for. Its readings are still Unix times, so they are stored, shown and compared
with stored times as before; restart recovery reads the stored times against a
new anchor (the wall clock at the new start), as it always did. The price is that
timestamps written by a running agent do not follow a step either: they stay true
to elapsed time, and `drift()` says by how much the wall clock now disagrees (it is
logged once per step, `clock_step_detected`, so an operator knows why).

The sources are arguments, so tests drive both clocks by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import structlog

log = structlog.get_logger(__name__)

#: A disagreement this large between the wall clock and elapsed time is a step.
STEP_S: Final = 2.0


class SteadyClock:
    """Callable like `time.time`; see the module docstring."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._mono = mono
        self._anchor_wall = wall()
        self._anchor_mono = mono()
        self._reported = 0.0

    def __call__(self) -> float:
        return self._anchor_wall + (self._mono() - self._anchor_mono)

    def drift(self) -> float:
        """How far the wall clock is ahead (+) or behind (-) the time this clock keeps."""
        return self._wall() - self()

    def check_step(self) -> float:
        """Log a wall-clock step once (the first time each new drift is seen); returns it."""
        drift = self.drift()
        if abs(drift - self._reported) >= STEP_S:
            self._reported = drift
            log.warning("clock_step_detected", drift_s=round(drift, 1),
                        note="timers keep elapsed time; stored times follow it until restart")
        return drift
