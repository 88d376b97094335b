"""The status page's content, computed once for every public surface. Pure.

`build(...)` takes what the store holds (open incidents, public notices,
the uptime rollup, maintenance windows) and the time, and returns a
`StatusView`: each component's state and 90 days of uptime, the incidents
customers were told about with every public update, and the maintenance
announced. The HTML page, /status.json, the Atom feed and the badges all
render this one object, so they cannot disagree, and none of them can show
what is not in it: components' own names and public notices' text only.

A component's state comes from its checks' open customer-facing incidents:
every check down is a major outage, some a partial outage, a degraded
incident is degraded performance; a maintenance window over its checks is
"under maintenance" unless something is down anyway.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from agent.config_status import Component, StatusConfig
from agent.detect.maintenance import MaintenanceWindow
from agent.incidents import Incident
from agent.status.notices import PUBLIC_KINDS, local, maintenance_text, occurrence
from agent.store.status import Notice
from agent.vocab import ComponentState, IncidentKind, NoticeKind

LABELS = {
    ComponentState.OPERATIONAL: "Operational",
    ComponentState.DEGRADED: "Degraded performance",
    ComponentState.PARTIAL_OUTAGE: "Partial outage",
    ComponentState.MAJOR_OUTAGE: "Major outage",
    ComponentState.UNDER_MAINTENANCE: "Under maintenance",
}
#: Worst first: the page's headline is the worst component state.
SEVERITY = (ComponentState.MAJOR_OUTAGE, ComponentState.PARTIAL_OUTAGE,
            ComponentState.DEGRADED, ComponentState.UNDER_MAINTENANCE,
            ComponentState.OPERATIONAL)
HEADLINES = {
    ComponentState.OPERATIONAL: "All systems operational",
    ComponentState.DEGRADED: "Some systems are slower than usual",
    ComponentState.PARTIAL_OUTAGE: "Some systems are having problems",
    ComponentState.MAJOR_OUTAGE: "Major outage",
    ComponentState.UNDER_MAINTENANCE: "Maintenance in progress",
}
KIND_LABELS = {"opening": "Investigating", "update": "Update", "closing": "Resolved",
               "maintenance": "Scheduled"}
Uptime = Mapping[str, Mapping[str, tuple[float, float, float]]]


@dataclass(frozen=True, slots=True)
class Day:
    date: str
    #: Percent of the (unplanned) time up; None when nothing was measured that day.
    percent: float | None
    css: str  # none, ok, minor, major


@dataclass(frozen=True, slots=True)
class ComponentView:
    name: str
    slug: str
    group: str
    description: str
    state: ComponentState
    label: str
    #: Over the whole history; None when nothing was measured yet.
    uptime: float | None
    days: tuple[Day, ...]


@dataclass(frozen=True, slots=True)
class Update:
    id: int  # the notice's
    kind: str
    label: str
    at: float
    when: str  # local time, for people
    iso: str  # for machines
    text: str


@dataclass(frozen=True, slots=True)
class IncidentView:
    key: str  # "12" for an incident, "m-..." for a maintenance announcement
    title: str
    components: tuple[str, ...]
    resolved: bool
    updates: tuple[Update, ...]  # newest first


@dataclass(frozen=True, slots=True)
class Maintenance:
    components: tuple[str, ...]
    start: float
    end: float | None
    active: bool
    text: str


@dataclass(frozen=True, slots=True)
class StatusView:
    title: str
    state: ComponentState
    headline: str
    components: tuple[ComponentView, ...]
    groups: tuple[tuple[str, tuple[ComponentView, ...]], ...]
    active: tuple[IncidentView, ...]
    history: tuple[IncidentView, ...]
    #: Maintenance going on now or announced (starting within `announce_ahead`).
    maintenance: tuple[Maintenance, ...]
    generated_at: float
    generated: str
    days: int

    def component(self, slug: str) -> ComponentView | None:
        return next((c for c in self.components if c.slug == slug), None)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def state_of(comp: Component, incidents: Iterable[Incident], windows: Sequence[MaintenanceWindow],
             tags: Mapping[str, tuple[str, ...]], now: float) -> ComponentState:
    down = {i.check for i in incidents
            if IncidentKind(i.kind).marks_down and i.check in comp.checks}
    if comp.checks and len(down) == len(comp.checks):
        return ComponentState.MAJOR_OUTAGE
    if down:
        return ComponentState.PARTIAL_OUTAGE
    if any(w.active(now) and w.covers(c, tags.get(c, ())) for w in windows for c in comp.checks):
        return ComponentState.UNDER_MAINTENANCE
    if any(i.kind in PUBLIC_KINDS and i.check in comp.checks for i in incidents):
        return ComponentState.DEGRADED
    return ComponentState.OPERATIONAL


def _days(comp: Component, uptime: Uptime, dates: Sequence[str]
          ) -> tuple[tuple[Day, ...], float | None]:
    days: list[Day] = []
    worst_total: float | None = None
    totals = {c: [0.0, 0.0] for c in comp.checks}
    for date in dates:
        pct: float | None = None
        for check in comp.checks:
            up, down, _maint = uptime.get(check, {}).get(date, (0.0, 0.0, 0.0))
            totals[check][0] += up
            totals[check][1] += down
            if up + down > 0:
                p = 100.0 * up / (up + down)
                pct = p if pct is None else min(pct, p)
        css = ("none" if pct is None else "ok" if pct >= 99.95 else
               "minor" if pct >= 99.0 else "major")
        days.append(Day(date, None if pct is None else round(pct, 2), css))
    for up, down in totals.values():
        if up + down > 0:
            p = 100.0 * up / (up + down)
            worst_total = p if worst_total is None else min(worst_total, p)
    return tuple(days), None if worst_total is None else round(worst_total, 2)


def _stories(notices: Sequence[Notice], by_slug: Mapping[str, Component], tz: ZoneInfo
             ) -> list[IncidentView]:
    """Notices (newest first) grouped into incidents and maintenance announcements."""
    groups: dict[str, list[Notice]] = {}
    for n in notices:
        key = str(n.incident_id) if n.incident_id is not None else f"m-{n.id}"
        groups.setdefault(key, []).append(n)
    out = []
    for key, items in groups.items():
        comps = tuple(by_slug[s].name for s in items[-1].components if s in by_slug)
        what = " and ".join(comps) if len(comps) <= 2 else f"{len(comps)} services"
        maint = items[0].kind == NoticeKind.MAINTENANCE
        title = f"Scheduled maintenance: {what}" if maint else f"Problem with {what}"
        updates = tuple(Update(n.id, n.kind, KIND_LABELS.get(n.kind, n.kind), n.at, local(n.at, tz),
                               iso(n.at), n.text) for n in items)
        out.append(IncidentView(key, title, comps, maint or items[0].kind == NoticeKind.CLOSING,
                                updates))
    return out


def _today(days: tuple[Day, ...], state: ComponentState) -> tuple[Day, ...]:
    """Today's bar shows an outage going on now, before the rollup has counted it
    (it is written once a minute): a page saying "major outage" over a green today
    would contradict itself."""
    css = {ComponentState.MAJOR_OUTAGE: "major", ComponentState.PARTIAL_OUTAGE: "minor"}.get(
        state)
    if not days or css is None or days[-1].css in ("minor", "major"):
        return days
    return (*days[:-1], Day(days[-1].date, days[-1].percent, css))


def dates(days: int, tz: ZoneInfo, now: float) -> list[str]:
    today = dt.datetime.fromtimestamp(now, tz).date()
    return [(today - dt.timedelta(days=k)).isoformat() for k in range(days - 1, -1, -1)]


Bars = Mapping[str, tuple[tuple[Day, ...], float | None]]


def bars(status: StatusConfig, uptime: Uptime, days: Sequence[str]) -> Bars:
    """Component slug -> (its days, its uptime over them): from the rollup alone, so it
    can be kept until the rollup is written again."""
    return {c.slug: _days(c, uptime, days) for c in status.components}


def build(status: StatusConfig, tz: ZoneInfo, *, incidents: Sequence[Incident],
          notices: Sequence[Notice], bars: Bars, windows: Sequence[MaintenanceWindow],
          tags: Mapping[str, tuple[str, ...]], now: float) -> StatusView:
    comps: list[ComponentView] = []
    for c in status.components:
        state = state_of(c, incidents, windows, tags, now)
        days, total = bars.get(c.slug, ((), None))
        days = _today(days, state)
        comps.append(ComponentView(c.name, c.slug, c.group, c.description, state,
                                   LABELS[state], total, days))
    overall = next((s for s in SEVERITY if any(c.state is s for c in comps)),
                   ComponentState.OPERATIONAL)
    # Components without a group first (no heading), then each group under its name:
    # an ungrouped one after a group would read as part of that group.
    groups: dict[str, list[ComponentView]] = {"": []}
    for cv in comps:
        groups.setdefault(cv.group, []).append(cv)
    if not groups[""]:
        del groups[""]
    stories = _stories(notices, {c.slug: c for c in status.components}, tz)
    open_ids = {str(i.id) for i in incidents}
    active = tuple(s for s in stories if not s.resolved and s.key in open_ids)
    history = tuple(s for s in stories if s not in active)
    return StatusView(status.title, overall, HEADLINES[overall], tuple(comps),
                      tuple((g, tuple(v)) for g, v in groups.items()), active, history,
                      _maintenance(status, windows, tags, tz, now), now, local(now, tz),
                      status.history_days)


def _maintenance(status: StatusConfig, windows: Sequence[MaintenanceWindow],
                 tags: Mapping[str, tuple[str, ...]], tz: ZoneInfo, now: float
                 ) -> tuple[Maintenance, ...]:
    out = []
    for w in windows:
        active, when = w.active(now), occurrence(w, now)
        if when is None or (not active and not now < when[0] <= now + status.announce_ahead):
            continue
        start, end = (now, when[1]) if active else when
        comps = tuple(c for c in status.components
                      if any(w.covers(ch, tags.get(ch, ())) for ch in c.checks))
        if comps:
            out.append(Maintenance(tuple(c.name for c in comps), start, end, active,
                                   maintenance_text(comps, start, end, tz)))
    return tuple(sorted(out, key=lambda m: m.start))
