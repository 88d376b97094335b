"""Snapshots of detector state: plain JSON-safe dicts, checked when read back. Pure.

Contract:
    data = save_slots(obj, FORMAT, params, names)    # {"format", "params", "state"}
    load_slots(fresh, data, FORMAT, params, names)   # fills `fresh`, or SnapshotError

A detector (`Baseline`, `ErrorRate`) keeps its learned state in fixed
`__slots__` of floats, ints, bools and fixed-length lists or typed arrays of
them (a snapshot writes both as JSON lists); a snapshot
holds exactly those, with the format number and the parameters they were
learned with. Reading one back is strict, because a wrong state is worse than
none (a restart that relearns costs a day of quiet; a state that means
something else costs false pages): a snapshot of another format or learned
with other parameters, a missing or extra field, a value of another type or a
list of another length is a `SnapshotError` and the caller starts afresh.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import asdict
from typing import Any


class SnapshotError(ValueError):
    """The stored state cannot be used by this version (the message says why)."""


def save_slots(obj: object, fmt: int, params: Any, names: tuple[str, ...]) -> dict[str, object]:
    state: dict[str, object] = {}
    for name in names:
        value = getattr(obj, name)
        state[name.lstrip("_")] = list(value) if isinstance(value, list | array) else value
    return {"format": fmt, "params": asdict(params), "state": state}


def _same_kind(default: object, value: object) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return type(default) is type(value)
    if isinstance(default, float):
        # JSON writes 3.0 as 3.0, but a hand-written or other store may give 3.
        return isinstance(value, (int, float)) and math.isfinite(value)
    return type(default) is type(value)


def load_slots(obj: object, data: object, fmt: int, params: Any,
               names: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise SnapshotError(f"not a snapshot: {type(data).__name__}")
    if data.get("format") != fmt:
        raise SnapshotError(f"format {data.get('format')!r}, this version reads {fmt}")
    if data.get("params") != asdict(params):
        raise SnapshotError("learned with other parameters")
    state = data.get("state")
    if not isinstance(state, dict) or set(state) != {n.lstrip("_") for n in names}:
        raise SnapshotError("fields do not match this version")
    for name in names:
        default, value = getattr(obj, name), state[name.lstrip("_")]
        if isinstance(default, list | array):
            if not isinstance(value, list) or len(value) != len(default) or not all(
                    _same_kind(d, v) for d, v in zip(default, value, strict=True)):
                raise SnapshotError(f"{name.lstrip('_')}: not a list like this version's")
            items = [type(d)(v) for d, v in zip(default, value, strict=True)]
            value = array(default.typecode, items) if isinstance(default, array) else items
        elif not _same_kind(default, value):
            raise SnapshotError(f"{name.lstrip('_')}: {value!r} is not a {type(default).__name__}")
        else:
            value = type(default)(value)
        setattr(obj, name, value)
