"""What a check's detection signal does to its incidents. Pure: time and ids are arguments.

`decide(signal, current, latest, ctx)` takes one `pipeline.CheckSignal`, the
check's open incident of that signal's kind family (`current`), for an
outage its newest incident even if resolved (`latest`, which a failure soon
after its resolution reopens), and returns the `Transition` to apply, or
None for nothing. A note on an open incident is a transition too: the
incident unchanged, one timeline entry, nothing to notify.

The engine finds `current`/`latest`, chooses the policy of an incident that
opens, persists the transition and carries out its escalation; `Held`
signals (a suppressed child's outage, noted on its parents' incidents) are
the engine's own, since they concern other checks' incidents.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent import incidents
from agent.detect.pipeline import CheckSignal, Degraded, Flap, Observed, OutageChange
from agent.incidents import Incident, Transition
from agent.vocab import IncidentKind, Severity


@dataclass(frozen=True, slots=True)
class Context:
    check: str
    #: The check's configured severity (outages and flapping).
    severity: Severity
    #: What a person reads as the target (URL, host:port), for the timeline.
    target: str
    now: float
    #: The id a new incident gets.
    new_id: int
    #: A resolved outage failing again within this long is reopened.
    reopen_window: float = 0.0


def kind_of(signal: CheckSignal) -> IncidentKind:
    """Which incident kind family the signal concerns."""
    if isinstance(signal, Degraded):
        return IncidentKind.DEGRADED
    if isinstance(signal, Observed):
        return signal.signal.kind.incident
    return IncidentKind.OUTAGE


def decide(signal: CheckSignal, current: Incident | None, latest: Incident | None,
           ctx: Context) -> Transition | None:
    if isinstance(signal, OutageChange):
        return incidents.on_signal(current or latest, signal.signal, severity=ctx.severity,
                                   target=ctx.target, now=ctx.now, new_id=ctx.new_id,
                                   reopen_window=ctx.reopen_window)
    if isinstance(signal, Flap):
        return _flap(signal, current, ctx)
    if isinstance(signal, Observed):
        return _observed(signal, current, ctx)
    if isinstance(signal, Degraded):
        return _degraded(signal, current, ctx)
    return None


def _flap(sig: Flap, current: Incident | None, ctx: Context) -> Transition | None:
    if sig.started:
        return incidents.flapping_started(current, ctx.check, severity=ctx.severity,
                                          detail=sig.detail, now=ctx.now, new_id=ctx.new_id)
    if current is None:
        return None  # settled with nothing open (resolved by hand meanwhile)
    return incidents.flapping_stopped(current, up=sig.up, now=ctx.now)


def _observed(obs: Observed, current: Incident | None, ctx: Context) -> Transition | None:
    sig = obs.signal
    if sig.kind.clears:
        return None if current is None else incidents.resolve(
            current, now=ctx.now, actor="onwatch", note=sig.reason)
    if current is None:
        return incidents.observed(sig.kind.incident, ctx.check, severity=sig.severity,
                                  reason=sig.reason, now=ctx.now, new_id=ctx.new_id)
    if sig.kind.incident is IncidentKind.CHANGED:
        return _note(current, ctx, f"changed again: {sig.reason}")
    if current.severity != sig.severity:
        return incidents.change_severity(current, severity=sig.severity, reason=sig.reason,
                                         now=ctx.now)
    return None


def _degraded(sig: Degraded, current: Incident | None, ctx: Context) -> Transition | None:
    """One "degraded" incident per check, open while any of its signals is degraded."""
    if sig.degraded:
        if current is None:
            return incidents.observed(IncidentKind.DEGRADED, ctx.check, severity=Severity.LOW,
                                      reason=sig.reason, now=ctx.now, new_id=ctx.new_id)
        return _note(current, ctx, f"also degraded: {sig.reason}")
    if current is not None and not sig.any_degraded:
        return incidents.resolve(current, now=ctx.now, actor="onwatch", note=sig.reason)
    return None


def _note(inc: Incident, ctx: Context, text: str) -> Transition:
    return Transition(inc, (incidents.note(inc, now=ctx.now, by="onwatch", text=text),), None)
