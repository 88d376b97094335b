"""Per-check series: slotted objects whose exposition lines are cached, re-rendered only
after a value changed, so that a scrape of 10,000 checks is mostly one join of bytes.

prometheus_client keeps a child object per label set, each with its own
lock and value objects, and formats every sample anew on every scrape: at
10,000 checks with ~30 series each that is seconds of CPU on the event
loop, and most of the agent's memory. Here one `CheckMetrics` per check
holds plain floats; `record()` updates them and puts the check on the dirty
list; `CheckSeries.exposition()` renders the dirty checks (a few hundred per
scrape at a typical pace) and joins every family's cached lines.

What a check exports by default (see README, "What each metric costs"):
`onwatch_check_up` (once known), `onwatch_check_runs_total` for the results
it has had (a result that never happened has no series),
`onwatch_check_duration_seconds` as a histogram with only its `+Inf` bucket,
`_sum` and `_count` (the mean; `[agent] check_duration_buckets` adds
buckets), and the observations of its last run (an http check: its status
code and body size; phase timings only with the check's `phase_timings`).
The text is Prometheus's format 0.0.4; names, units and labels are those of
`metrics_observations`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent import metrics_observations as observations
from checks.result import CheckResult, ErrorKind

if TYPE_CHECKING:
    from agent.config_service import ServiceSettings

_UP, _RUNS, _DURATION = "up", "runs", "duration"
_HEADERS = {
    _UP: ("onwatch_check_up", "gauge",
          "1 when the check is up, 0 when down (confirmed), absent until known"),
    _RUNS: ("onwatch_check_runs_total", "counter", "Probe runs by result"),
    _DURATION: ("onwatch_check_duration_seconds", "histogram",
                "Probe latency (to headers for http)"),
}


def fmt(value: float) -> str:
    """A sample value as Prometheus writes it (Go's float formatting of +Inf, NaN)."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    return repr(float(value))


def label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class CheckMetrics:
    """One check's values and its cached lines, one bytes object per family."""

    __slots__ = (
        "_label",
        "_owner",
        "dirty",
        "dur_buckets",
        "dur_count",
        "dur_sum",
        "lines",
        "name",
        "obs",
        "runs",
        "up",
    )

    def __init__(self, owner: CheckSeries, name: str) -> None:
        self.name = name
        self._owner = owner
        self._label = f'check="{label(name)}"'
        self.up: float | None = None
        self.runs: dict[str, float] = {}
        self.dur_sum = 0.0
        self.dur_count = 0
        self.dur_buckets: list[int] | None = [0] * len(owner.buckets) if owner.buckets else None
        #: (family, label values after `check`) -> (value); only exported keys.
        self.obs: dict[tuple[str, tuple[str, ...]], float] = {}
        self.lines: dict[str, bytes] = {}
        self.dirty = False
        self._touch()

    def _touch(self) -> None:
        if not self.dirty:
            self.dirty = True
            self._owner.dirty.append(self)

    def set_up(self, up: bool | None) -> None:
        """1 up, 0 down, None unknown (no series)."""
        value = None if up is None else float(up)
        if value != self.up:
            self.up = value
            self._touch()

    def record(self, result: CheckResult) -> None:
        latency = result.latency_s
        self.dur_sum += latency
        self.dur_count += 1
        if self.dur_buckets is not None:
            i = bisect.bisect_left(self._owner.buckets, latency)
            if i < len(self.dur_buckets):
                self.dur_buckets[i] += 1
        if result.observations:
            self._observe(result.observations.items())
        if result.ok:
            res = "degraded" if result.degraded else "ok"
        else:
            res = (result.error_kind or ErrorKind.INTERNAL).value
        self.runs[res] = self.runs.get(res, 0.0) + 1.0
        self._touch()

    def _observe(self, items: Iterable[tuple[str, float]]) -> None:
        places = self._owner.places
        for key, value in items:
            if key in places:
                where = places[key]
            else:
                where = places[key] = self._owner.place(key)
            if where is not None:
                self.obs[where[0]] = value * where[1]

    def render(self) -> None:
        """Re-format this check's lines from its values (on a scrape, when dirty)."""
        lab = self._label
        lines: dict[str, bytes] = {}
        if self.up is not None:
            lines[_UP] = f"onwatch_check_up{{{lab}}} {fmt(self.up)}\n".encode()
        if self.runs:
            lines[_RUNS] = "".join(
                f'onwatch_check_runs_total{{{lab},result="{r}"}} {fmt(n)}\n'
                for r, n in self.runs.items()).encode()
        lines[_DURATION] = self._duration(lab).encode()
        by_family: dict[str, list[str]] = {}
        for (family, values), value in self.obs.items():
            name, _, labels = observations.FAMILIES[family]
            extra = "".join(f',{k}="{label(v)}"' for k, v in zip(labels[1:], values, strict=True))
            by_family.setdefault(family, []).append(f"{name}{{{lab}{extra}}} {fmt(value)}\n")
        for family, text in by_family.items():
            lines[family] = "".join(text).encode()
        self.lines = lines
        self.dirty = False

    def _duration(self, lab: str) -> str:
        name = "onwatch_check_duration_seconds"
        out = []
        if self.dur_buckets is not None:
            acc = 0
            for bound, n in zip(self._owner.buckets, self.dur_buckets, strict=True):
                acc += n
                out.append(f'{name}_bucket{{{lab},le="{fmt(bound)}"}} {fmt(acc)}\n')
        out.append(f'{name}_bucket{{{lab},le="+Inf"}} {fmt(self.dur_count)}\n'
                   f"{name}_sum{{{lab}}} {fmt(self.dur_sum)}\n"
                   f"{name}_count{{{lab}}} {fmt(self.dur_count)}\n")
        return "".join(out)


class CheckSeries:
    """Every check's `CheckMetrics`, and their part of the /metrics text."""

    def __init__(self, settings: ServiceSettings | None = None) -> None:
        self.buckets: tuple[float, ...] = settings.check_duration_buckets if settings else ()
        self.checks: dict[str, CheckMetrics] = {}
        self.dirty: list[CheckMetrics] = []
        #: Observation key -> ((family, label values), scale) or None (not exported);
        #: shared by all checks, since the same kinds report the same keys.
        self.places: dict[str, tuple[tuple[str, tuple[str, ...]], float] | None] = {}
        families = [(f, n, d) for f, (n, d, _) in observations.FAMILIES.items()]
        self._headers = [(key, f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode())
                         for key, (name, kind, doc) in _HEADERS.items()]
        self._headers += [(f, f"# HELP {n} {d}\n# TYPE {n} gauge\n".encode())
                          for f, n, d in families]

    def place(self, key: str) -> tuple[tuple[str, tuple[str, ...]], float] | None:
        where = observations.place(key)
        return None if where is None else ((where[0], where[1]), where[2])

    def for_check(self, name: str) -> CheckMetrics:
        cm = self.checks.get(name)
        if cm is None:
            cm = self.checks[name] = CheckMetrics(self, name)
        return cm

    def remove(self, name: str) -> None:
        """A check removed by a reload: its series go (a dirty entry is skipped)."""
        cm = self.checks.pop(name, None)
        if cm is not None:
            cm.lines = {}

    def series_count(self) -> int:
        """Samples in the per-check exposition (what the structure test counts)."""
        return sum(b.count(b"\n") for b in self.chunks()) - 2 * len(self._headers)

    def chunks(self) -> list[bytes]:
        """The per-check text, as parts to join: the dirty checks are rendered first."""
        dirty, self.dirty = self.dirty, []
        for cm in dirty:
            if cm.dirty:
                cm.render()
        parts: list[bytes] = []
        checks = list(self.checks.values())
        for key, header in self._headers:
            parts.append(header)
            parts.extend([cm.lines[key] for cm in checks if key in cm.lines])
        return parts
