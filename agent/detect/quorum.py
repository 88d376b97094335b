"""Agreement between locations: a check seen from several places is down when enough
of them say so. Pure.

Each location (this agent, "local", and every remote probe the check names) has
its own outage state, confirmed exactly as a single-location check's is
(agent/detect/outage.py: `confirm` failures, `recover` successes). The check
itself is *down* once at least `quorum` locations have confirmed it down, and
*up* again once fewer than `quorum` do and at least one location has confirmed
it up. One location alone failing is recorded (`Vote.seen`) and named in every
reason, but opens nothing: the shop is not down because one line to it is.

A location that stops reporting (its probe is unreachable) is forgotten:
neither up nor down until it reports again, so it can neither keep an outage
open nor make one.

`observe` updates one location with one result; `verdict` says whether the
check's own health changes, as the `outage.Signal` the engine understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.detect import outage
from agent.detect.outage import Health, OutageState, Signal
from checks.result import CheckResult, ErrorKind


@dataclass(slots=True)
class Seen:
    """What one location last saw of one check."""

    state: OutageState = field(default_factory=OutageState)
    reason: str = ""
    error_kind: ErrorKind | None = None
    at: float = 0.0


@dataclass(slots=True)
class Vote:
    """One check's agreement state: per location, and the check's own health."""

    seen: dict[str, Seen] = field(default_factory=dict)
    down: bool = False
    #: When the check's outage began (the earliest first failure among the locations
    #: that made the quorum).
    since: float = 0.0
    #: Why a confirmed outage was held back from paging (maintenance, a parent down).
    held: str | None = None


def observe(vote: Vote, location: str, check: str, result: CheckResult, *, confirm: int,
            recover: int, now: float) -> bool:
    """Feed one result from `location`; returns whether the shell should re-check soon
    (only meaningful for "local": remote probes decide their own re-checks)."""
    seen = vote.seen.get(location)
    if seen is None:
        seen = vote.seen[location] = Seen()
    step = outage.observe(seen.state, check, result, confirm=confirm, recover=recover, now=now)
    seen.state = step.state
    seen.at = now
    seen.reason = result.reason
    seen.error_kind = result.error_kind
    return step.recheck


def forget(vote: Vote, location: str) -> None:
    """`location` stopped reporting: what it last saw no longer counts."""
    vote.seen.pop(location, None)


def health_at(vote: Vote, location: str) -> Health:
    seen = vote.seen.get(location)
    return Health.UNKNOWN if seen is None else seen.state.health


def verdict(vote: Vote, check: str, locations: Sequence[str], quorum: int, *, now: float
            ) -> Signal | None:
    """The check's own change of health after the latest results, if any."""
    down = [loc for loc in locations if health_at(vote, loc) is Health.DOWN]
    up = [loc for loc in locations if health_at(vote, loc) is Health.UP]
    if not vote.down and len(down) >= quorum:
        vote.down = True
        vote.since = min(_began(vote.seen[loc]) for loc in down)
        first = vote.seen[down[0]]
        return Signal(Health.DOWN, check, now, vote.since, describe(vote, locations, quorum),
                      first.error_kind)
    if vote.down and len(down) < quorum and up:
        vote.down = False
        vote.held = None
        return Signal(Health.UP, check, now, vote.since, describe(vote, locations, quorum),
                      None)
    return None


def restored(since: float) -> Vote:
    """A check whose outage incident was open when the agent stopped: known down, with
    no location's view yet (each location confirms again from its next results)."""
    return Vote(down=True, since=since)


def describe(vote: Vote, locations: Sequence[str], quorum: int) -> str:
    """"down from shop-berlin (connect refused), cloud-eu (timeout); up from local;
    2 of 3 locations, quorum 2" -- what each location sees, for reasons and pages."""
    parts = []
    for health in (Health.DOWN, Health.UP, Health.UNKNOWN):
        names = []
        for loc in locations:
            if health_at(vote, loc) is not health:
                continue
            seen = vote.seen.get(loc)
            detail = f" ({seen.reason})" if health is Health.DOWN and seen else ""
            names.append(loc + detail)
        if names:
            label = {Health.DOWN: "down from", Health.UP: "up from",
                     Health.UNKNOWN: "no word yet from"}[health]
            parts.append(f"{label} {', '.join(names)}")
    n_down = sum(health_at(vote, loc) is Health.DOWN for loc in locations)
    parts.append(f"{n_down} of {len(locations)} locations down, quorum {quorum}")
    return "; ".join(parts)


def _began(seen: Seen) -> float:
    return seen.state.since or seen.at
