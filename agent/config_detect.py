"""Detection settings in the config: maintenance windows and check dependencies.

Called by `agent.config.parse` with the shared error list. Problems read like
the rest: `maintenance[0]: checks: no check named "pso"`,
`checks[3] "pos-api": depends_on: a dependency cycle: pos-api -> router -> pos-api`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from agent.detect.maintenance import MaintenanceWindow
from agent.fields import Section, show
from agent.policy import BusinessHours, parse_openings


class _Check(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def depends_on(self) -> tuple[str, ...]: ...


def maintenance(raw: list[Any], root: Section, tz: ZoneInfo, checks: Sequence[_Check]
                ) -> tuple[MaintenanceWindow, ...]:
    names = {c.name for c in checks}
    tags = {t for c in checks for t in c.tags}
    out: list[MaintenanceWindow] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            root.error(f"maintenance[{i}]", f"must be a table, got {show(item)}")
            continue
        sec = Section(item, f"maintenance[{i}]", root.errors, root.base_dir)
        w_checks = sec.string_list("checks")
        w_tags = sec.string_list("tags")
        for n in w_checks:
            if n not in names:
                sec.error("checks", f"no check named {show(n)}")
        for t in w_tags:
            if t not in tags:
                sec.error("tags", f"no check has the tag {show(t)}")
        if not w_checks and not w_tags:
            sec.error(None, "name the checks or tags it covers (checks = [...] or tags = [...])")
        reason = sec.string("reason", "", nonempty=False)
        weekly_text = sec.string_list("weekly")
        start_text = sec.optional_string("start")
        if weekly_text and start_text is not None:
            sec.error(None, "give either weekly or start (with duration or end), not both")
        if weekly_text:
            windows = []
            for j, text in enumerate(weekly_text):
                got = parse_openings(text.strip().lower())
                if got is None:
                    sec.error(f"weekly[{j}]", 'must read like "sun 02:00-04:00", '
                                              f"got {show(text)}")
                windows += got or []
            out.append(MaintenanceWindow(f"config:{i}", frozenset(w_checks), frozenset(w_tags),
                              weekly=BusinessHours(tz, tuple(windows)), reason=reason))
        elif start_text is not None:
            start = _local(sec, "start", start_text, tz)
            end = None
            if sec.has("end"):
                end = _local(sec, "end", sec.string("end"), tz)
            else:
                end = None if start is None else start + sec.duration("duration", 3600.0)
            if start is not None and end is not None and end <= start:
                sec.error("end", "must be after start")
            out.append(MaintenanceWindow(f"config:{i}", frozenset(w_checks), frozenset(w_tags),
                              start, end, reason=reason))
        else:
            sec.error(None, 'needs weekly = ["sun 02:00-04:00"] or start = "2026-12-01 22:00"')
        sec.value("duration")
        sec.finish()
    return tuple(out)


def _local(sec: Section, key: str, text: str, tz: ZoneInfo) -> float | None:
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()
    except ValueError:
        sec.error(key, f'must be a local date and time like "2026-12-01 22:00", got {show(text)}')
        return None


def dependencies(checks: Sequence[_Check], error: Callable[[int, str], None]) -> None:
    """Every `depends_on` names another existing check, and there is no cycle."""
    by_name: Mapping[str, _Check] = {c.name: c for c in checks}
    for i, c in enumerate(checks):
        for parent in c.depends_on:
            if parent == c.name:
                error(i, "depends_on: a check cannot depend on itself")
            elif parent not in by_name:
                error(i, f"depends_on: no check named {show(parent)}")
    reported: set[str] = set()
    for i, c in enumerate(checks):
        path = _cycle(c.name, by_name, (), set())
        if path and c.name not in reported:
            reported.update(path)
            error(i, f"depends_on: a dependency cycle: {' -> '.join((*path, path[0]))}")


def _cycle(name: str, by_name: Mapping[str, _Check], path: tuple[str, ...], seen: set[str]
           ) -> tuple[str, ...] | None:
    if name in path:
        return path[path.index(name):]
    if name in seen or name not in by_name:
        return None
    seen.add(name)
    for parent in by_name[name].depends_on:
        if parent != name:
            found = _cycle(parent, by_name, (*path, name), seen)
            if found:
                return found
    return None
