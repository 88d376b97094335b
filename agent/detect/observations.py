"""Signals from a check's observations: changes that may mean an attack, and trends. Pure.

- change: a watched observation (a page's content fingerprint, a certificate's
  key fingerprint, a DNS answer set) differs from the last value seen. The
  first value is learned silently. Opens a "changed" incident (security-
  flavoured: its severity defaults to critical so a route can send it to the
  owner at once); later changes while it is open are noted on it.
- expiry: days left on a certificate under `warn_days` opens an "expiring"
  incident (low), raised to high under `critical_days`; resolved once renewed.
- fill: a disk that will be full within `full_within` at its current fill
  rate (free bytes / fill rate, from the host probe) opens a "filling"
  incident; resolved when the forecast is comfortable again (twice the
  horizon, as hysteresis) or the disk stops filling.

Observation keys may carry a suffix after ":" (a mount, a record); a rule
for "disk_hours_to_full" applies to every "disk_hours_to_full:<mount>".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.vocab import IncidentKind, Severity

#: Observation keys whose change is watched by default, per the probes' names.
CHANGE_KEYS = ("content_fingerprint", "cert_fingerprint", "answer_fingerprint")
EXPIRY_KEYS = ("cert_days_left", "tls_cert_days_left")
FILL_KEY = "disk_hours_to_full"


class ObsKind(enum.StrEnum):
    CHANGED = "changed"
    EXPIRING = "expiring"
    RENEWED = "renewed"
    FILLING = "filling"
    FILL_OK = "fill_ok"

    @property
    def incident(self) -> IncidentKind:
        """The incident kind this signal opens, raises or resolves."""
        return _INCIDENT[self]

    @property
    def clears(self) -> bool:
        """The condition is over (certificate renewed, disk no longer filling)."""
        return self in (ObsKind.RENEWED, ObsKind.FILL_OK)


_INCIDENT = {ObsKind.CHANGED: IncidentKind.CHANGED, ObsKind.EXPIRING: IncidentKind.EXPIRING,
             ObsKind.RENEWED: IncidentKind.EXPIRING, ObsKind.FILLING: IncidentKind.FILLING,
             ObsKind.FILL_OK: IncidentKind.FILLING}


@dataclass(frozen=True, slots=True)
class Rules:
    watch_changes: tuple[str, ...] = CHANGE_KEYS
    warn_days: float = 21.0
    critical_days: float = 7.0
    full_within: float = 24 * 3600.0


@dataclass(slots=True)
class ObsState:
    last: dict[str, float] = field(default_factory=dict)
    #: Expiry severity currently signalled per key ("low"/"high"), absent: fine.
    expiring: dict[str, Severity] = field(default_factory=dict)
    filling: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ObsSignal:
    kind: ObsKind
    key: str
    severity: Severity
    reason: str


def _base(key: str) -> str:
    return key.split(":", 1)[0]


def hours_to_full(obs: Mapping[str, float]) -> dict[str, float]:
    """`disk_hours_to_full:<mount>` from the host probe's free bytes and fill rate."""
    out: dict[str, float] = {}
    for key, rate in obs.items():
        if key.startswith("disk_fill_rate_bytes_per_s:") and rate > 0:
            where = key.split(":", 1)[1]
            free = obs.get(f"disk_free_bytes:{where}")
            if free is not None:
                out[f"{FILL_KEY}:{where}"] = free / rate / 3600
    return out


def observe(st: ObsState, obs: Mapping[str, float], rules: Rules) -> list[ObsSignal]:
    out: list[ObsSignal] = []
    derived = hours_to_full(obs)
    for key, value in (*obs.items(), *derived.items()):
        base = _base(key)
        if base in rules.watch_changes:
            before = st.last.get(key)
            st.last[key] = value
            if before is not None and before != value:
                what = base.replace("_", " ")
                out.append(ObsSignal(ObsKind.CHANGED, key, Severity.CRITICAL,
                                     f"{what} changed{_where(key)} (was {before:.0f}, now "
                                     f"{value:.0f}): an unexpected change may mean a "
                                     "compromise or a broken deployment"))
        elif base in EXPIRY_KEYS:
            out += _expiry(st, key, value, rules)
        elif base == FILL_KEY:
            out += _fill(st, key, value, rules)
        elif base == "disk_fill_rate_bytes_per_s" and value <= 0:
            out += _fill(st, f"{FILL_KEY}:{key.split(':', 1)[-1]}", float("inf"), rules)
    return out


def _expiry(st: ObsState, key: str, days: float, rules: Rules) -> list[ObsSignal]:
    level = (Severity.HIGH if days < rules.critical_days else
             Severity.LOW if days < rules.warn_days else None)
    now_level = st.expiring.get(key)
    if level == now_level:
        return []
    if level is None:
        del st.expiring[key]
        return [ObsSignal(ObsKind.RENEWED, key, Severity.LOW,
                          f"certificate renewed: {days:.0f} days left")]
    st.expiring[key] = level
    return [ObsSignal(ObsKind.EXPIRING, key, level,
                      f"certificate{_where(key)} expires in {days:.0f} days")]


def _fill(st: ObsState, key: str, hours: float, rules: Rules) -> list[ObsSignal]:
    horizon = rules.full_within / 3600
    if key not in st.filling and hours < horizon:
        st.filling.add(key)
        return [ObsSignal(ObsKind.FILLING, key, Severity.HIGH,
                          f"disk{_where(key)} full in about {hours:.1f} hours at its "
                          "current fill rate")]
    if key in st.filling and hours > 2 * horizon:
        st.filling.discard(key)
        return [ObsSignal(ObsKind.FILL_OK, key, Severity.LOW,
                          f"disk{_where(key)} no longer filling fast ({hours:.0f} hours to "
                          "full)")]
    return []


def _where(key: str) -> str:
    return f" ({key.split(':', 1)[1]})" if ":" in key else ""
