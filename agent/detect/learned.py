"""What a check's detection has learned, as one JSON-safe value, and back. Pure.

Contract:
    data = learned.save(st)                 # None when nothing was learned
    changed = learned.load(st, data, p)     # into a fresh CheckState; SnapshotError if unusable

The baselines (response time, the observations a check names) and the
error-rate baseline take a day or more to learn. Everything else detection
remembers (outage confirmation, flapping, observation changes) is rebuilt in
a few runs, or from the store's open incidents (agent/runner.py), and is not
kept here.

A saved value holds the format, each baseline's snapshot (`Baseline.snapshot`,
checked when read back) with where its degraded decision stood (a change
being confirmed, degraded or not), and the error rate's snapshot. `load` is
all or nothing: a wrong format, a snapshot another version or other
parameters wrote, a field of the wrong type, is a `SnapshotError` and the
check starts learning afresh, because a wrong state costs false pages and a
fresh one only a quiet day. A stored signal the check no longer learns (an
observation removed from `baseline_observations`) is left out, and named in
the returned list; one it learns and had not stored starts fresh.
"""

from __future__ import annotations

import math
from typing import Any

from agent.detect.baseline import Baseline
from agent.detect.degraded import DegradedState
from agent.detect.errorrate import ErrorRate
from agent.detect.pipeline import ERROR_RATE, RESPONSE_TIME, CheckState, Params
from agent.detect.snapshot import SnapshotError

#: Bump when the layout below changes: older stored states are discarded.
FORMAT = 3
#: Where a degraded decision stands, beside its baseline: field -> type.
_DECISION: dict[str, tuple[type, ...]] = {
    "normal": (float, type(None)), "limit": (float,), "streak": (int,), "hits": (int,),
    "since": (float,), "total": (float,), "degraded": (bool,), "up": (bool,),
    "recovered_at": (float,), "calm": (float,), "calm_t": (float,)}


def signals(p: Params) -> tuple[str, ...]:
    """The baselines a check with these parameters learns."""
    return ((RESPONSE_TIME,) if p.baseline else ()) + tuple(p.baseline_observations)


def save(st: CheckState) -> dict[str, Any] | None:
    """The learned part of `st` (JSON-safe), or None when nothing was learned yet."""
    if not st.baselines and st.errors.samples == 0:
        return None
    baselines = {}
    for name, d in st.baselines.items():
        decision = {k: getattr(d, k) for k in _DECISION}
        baselines[name] = {"baseline": d.baseline.snapshot(), "decision": decision}
    return {"format": FORMAT, "baselines": baselines, "errors": st.errors.snapshot()}


def load(st: CheckState, data: object, p: Params) -> list[str]:
    """Fill `st` (fresh) from `save`'s value; the stored signals it left out."""
    if not isinstance(data, dict):
        raise SnapshotError(f"not a stored state: {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise SnapshotError(f"format {data.get('format')!r}, this version reads {FORMAT}")
    stored = data.get("baselines")
    if not isinstance(stored, dict) or set(data) != {"format", "baselines", "errors"}:
        raise SnapshotError("fields do not match this version")
    wanted = signals(p)
    baselines = {name: _degraded(name, value) for name, value in stored.items()
                 if name in wanted}
    errors = ErrorRate.restore(data["errors"]) if p.baseline else ErrorRate()
    # Only now, when everything was read: all or nothing.
    st.baselines.update(baselines)
    st.errors = errors
    st.degraded_now = {name for name, d in baselines.items() if d.degraded}
    if errors.degraded:
        st.degraded_now.add(ERROR_RATE)
    return sorted(name for name in stored if name not in wanted)


def _degraded(name: str, value: object) -> DegradedState:
    if not isinstance(value, dict) or set(value) != {"baseline", "decision"}:
        raise SnapshotError(f"{name}: not a stored baseline")
    try:
        baseline = Baseline.restore(value["baseline"])
    except SnapshotError as exc:
        raise SnapshotError(f"{name}: {exc}") from None
    decision = value["decision"]
    if not isinstance(decision, dict) or set(decision) != set(_DECISION):
        raise SnapshotError(f"{name}: decision fields do not match this version")
    fields: dict[str, Any] = {}
    for key, kinds in _DECISION.items():
        v = decision[key]
        if float in kinds and type(v) is int:
            v = float(v)  # JSON may write 3.0 as 3
        if type(v) not in kinds or (type(v) is float and not math.isfinite(v)):
            raise SnapshotError(f"{name}: decision {key}: {v!r} is not usable")
        fields[key] = v
    if fields["degraded"] and fields["normal"] is None:
        raise SnapshotError(f"{name}: degraded without a normal level")
    return DegradedState(baseline=baseline, **fields)


def samples(st: CheckState) -> dict[str, int]:
    """Samples each baseline has learned from (for the restored log line)."""
    out = {name: d.baseline.samples for name, d in st.baselines.items()}
    if st.errors.samples:
        out[ERROR_RATE] = st.errors.samples
    return out
