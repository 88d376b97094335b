"""The detection pipeline of one check: one result in, typed signals out. Pure.

`step(state, check, result, params, now=, hold=)` runs every detector in
order on one probe result — outage confirmation, observation changes and
trends, the baselines (on successful runs), flapping — updates the check's
one `CheckState` in place and returns what the engine must hear:

- `OutageChange`: a confirmed down or up (`outage.Signal`);
- `Held`: a confirmed outage that must not page now (`hold` says why: a
  maintenance window, a parent that is down); the state remembers it, and
  when a later run finds the check still down with nothing holding it, an
  `OutageChange` ("still down after the suppression ended") follows, once;
- `Flap`: flapping started or stopped (its ups and downs are then muted:
  `Step.muted` carries the outage signal that was not passed on);
- `Observed`: a change or trend signal (`observations.ObsSignal`);
- `Degraded`: one of the check's baselines became degraded or recovered,
  with whether any of its signals is still degraded — the engine keeps one
  "degraded" incident per check open while any is.

The shell reads the clock and decides `hold` (it knows maintenance windows
and other checks); nothing here does I/O or reads the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.detect import degraded, flapping, observations, outage
from agent.detect.degraded import DegradedState
from agent.detect.errorrate import ErrorRate
from agent.detect.flapping import FlapState
from agent.detect.observations import ObsSignal, ObsState, Rules
from agent.detect.outage import Health, OutageState, Signal
from checks.result import CheckResult

#: The baseline of a check's response time is called this in reasons and state.
RESPONSE_TIME = "response time"
#: The error-rate baseline (agent/detect/errorrate.py), learned with the response time's.
ERROR_RATE = "error rate"

_RISES = degraded.DegradedParams()
_EITHER = degraded.DegradedParams(falls=True)


@dataclass(frozen=True, slots=True)
class Params:
    """What detection needs from a check's configuration."""

    confirm: int = 4
    recover: int = 1
    #: Learn the response time's normal level (a sustained rise is "degraded").
    baseline: bool = False
    #: Observations whose normal level is learned in the same way.
    baseline_observations: tuple[str, ...] = ()
    rules: Rules = field(default_factory=Rules)
    #: How a baseline's scores become decisions: a slower response is a problem, a
    #: faster one not; an observation's meaning is not known (disk free, orders an
    #: hour, a queue depth), so a sustained change either way is.
    response_time: degraded.DegradedParams = _RISES
    observation: degraded.DegradedParams = _EITHER


@dataclass(slots=True)
class CheckState:
    """Everything detection remembers about one check between runs."""

    outage: OutageState = field(default_factory=OutageState)
    flap: FlapState = field(default_factory=FlapState)
    obs: ObsState = field(default_factory=ObsState)
    #: Baselines per signal (RESPONSE_TIME, observation keys), and those degraded now.
    baselines: dict[str, DegradedState] = field(default_factory=dict)
    #: The share of failing runs against this check's normal (with `Params.baseline`).
    errors: ErrorRate = field(default_factory=ErrorRate)
    degraded_now: set[str] = field(default_factory=set)
    #: Why a confirmed outage is held back from paging; None: nothing held.
    held: str | None = None


@dataclass(frozen=True, slots=True)
class OutageChange:
    signal: Signal


@dataclass(frozen=True, slots=True)
class Held:
    signal: Signal
    why: str


@dataclass(frozen=True, slots=True)
class Flap:
    started: bool
    #: Weighted share of state changes over the last `flapping.RUNS` runs.
    change: float
    #: For a stop: whether the check settled up (else it settled down).
    up: bool

    @property
    def detail(self) -> str:
        return f"{self.change:.0%} state change over its last {flapping.RUNS} runs"


@dataclass(frozen=True, slots=True)
class Observed:
    signal: ObsSignal


@dataclass(frozen=True, slots=True)
class Degraded:
    #: "response time" or an observation key.
    name: str
    #: True: this signal became degraded; False: it recovered.
    degraded: bool
    reason: str
    #: Whether any of the check's signals is degraded after this change.
    any_degraded: bool


CheckSignal = OutageChange | Held | Flap | Observed | Degraded


@dataclass(frozen=True, slots=True)
class Step:
    signals: tuple[CheckSignal, ...]
    #: Re-check quickly instead of waiting a whole interval.
    recheck: bool = False
    #: The confirmed health changed with this run.
    health_changed: bool = False
    #: A confirmed change not passed on because the check is flapping.
    muted: Signal | None = None


def step(st: CheckState, check: str, result: CheckResult, p: Params, *, now: float,
         hold: str | None) -> Step:
    """Feed one result through every detector; `st` is updated in place."""
    out = outage.observe(st.outage, check, result, confirm=p.confirm, recover=p.recover, now=now)
    changed = out.state.health is not st.outage.health
    st.outage = out.state
    signals: list[CheckSignal] = []
    if result.observations:
        signals += [Observed(s) for s in observations.observe(st.obs, result.observations,
                                                                p.rules)]
    if p.baseline and out.state.health is not Health.DOWN:
        # A confirmed outage is its own incident; every other run, failed or not,
        # counts into the share of failures.
        rate = st.errors.observe(now, result.ok)
        if rate is not None:
            signals.append(_degraded(st, ERROR_RATE, rate.kind == "degraded", rate.reason))
    if result.ok:
        signals += _learn(st, result, p, now)
    flap = flapping.observe(st.flap, out.state.health is Health.DOWN)
    st.flap = flap.state
    muted = None
    if flap.started or flap.stopped:
        signals.append(Flap(flap.started, flap.change, out.state.health is not Health.DOWN))
    elif out.signal is not None and flap.state.flapping:
        muted = out.signal
    elif out.signal is not None:
        signals.append(_outage(st, out.signal, hold))
    elif st.held is not None and out.state.health is Health.DOWN and hold is None:
        st.held = None
        signals.append(OutageChange(Signal(Health.DOWN, check, now, out.state.since,
                                           "still down after the suppression ended", None)))
    return Step(tuple(signals), out.recheck, changed, muted)


def wants_hold(st: CheckState, result: CheckResult) -> bool:
    """Whether this run can need `hold` (the shell may skip working it out otherwise)."""
    return not result.ok or st.held is not None


def restored(since: float) -> CheckState:
    """A check whose outage incident was open when the agent stopped: known to be down."""
    return CheckState(outage=outage.restored_down(since))


def _outage(st: CheckState, signal: Signal, hold: str | None) -> CheckSignal:
    if signal.kind is Health.UP:
        st.held = None
        return OutageChange(signal)
    if hold is not None:
        st.held = hold
        return Held(signal, hold)
    return OutageChange(signal)


def _learn(st: CheckState, result: CheckResult, p: Params, now: float) -> list[CheckSignal]:
    """Feed the baselines: response time, and the observations the check names."""
    samples: list[tuple[str, float, str]] = []
    if p.baseline:
        samples.append((RESPONSE_TIME, result.latency_s, "s"))
    for key in p.baseline_observations:
        value = result.observations.get(key)
        if value is not None:
            samples.append((key, value, ""))
    out: list[CheckSignal] = []
    for name, value, unit in samples:
        base = st.baselines.get(name)
        if base is None:
            base = st.baselines[name] = DegradedState()
        change = degraded.observe(base, now, value, unit=unit,
                                  params=p.response_time if name == RESPONSE_TIME
                                  else p.observation)
        if change is not None:
            out.append(_degraded(st, name, change.kind == "degraded", change.reason))
    return out


def _degraded(st: CheckState, name: str, worse: bool, reason: str) -> Degraded:
    if worse:
        st.degraded_now.add(name)
    else:
        st.degraded_now.discard(name)
    return Degraded(name, worse, f"{name}: {reason}", bool(st.degraded_now))
