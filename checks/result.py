"""What one run of one probe saw: `CheckResult`, and why a check failed: `ErrorKind`.

The vocabulary every part of onwatch shares about a result -- probes build it, the
scheduler stamps it, detection, metrics and the API read it. Light on purpose: it
imports only the standard library, so that pure modules (detection, incidents,
escalation) can use it without pulling in a probe's network libraries.

A probe never reads the clock for a result: `success`/`failure` leave `checked_at`
at 0, and the one deadline owner (`checks.base.run_with_deadline`, called by the
scheduler) stamps the wall time of the run on what the probe returned.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class ErrorKind(enum.StrEnum):
    """Why a check failed. A bounded set: it is used as a metric label."""

    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    PROTOCOL = "protocol"
    ASSERTION = "assertion"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one run of one probe saw."""

    ok: bool
    latency_s: float
    reason: str
    error_kind: ErrorKind | None = None
    #: Unix time of the run; 0 until the scheduler stamps it (`run_with_deadline`).
    checked_at: float = 0.0
    observations: Mapping[str, float] = field(default_factory=dict)
    #: Passed, but worse than the user's threshold (e.g. slower than max_latency):
    #: not an outage; pattern detection may turn a run of these into a lower-severity incident.
    degraded: bool = False

    @classmethod
    def success(
        cls, latency_s: float, reason: str = "ok", observations: Mapping[str, float] | None = None,
        *, degraded: bool = False,
    ) -> CheckResult:
        return cls(True, latency_s, reason, None, 0.0, observations or {}, degraded)

    @classmethod
    def failure(
        cls,
        kind: ErrorKind,
        reason: str,
        latency_s: float = 0.0,
        observations: Mapping[str, float] | None = None,
    ) -> CheckResult:
        return cls(False, latency_s, reason, kind, 0.0, observations or {})
