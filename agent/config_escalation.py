"""The escalation half of the config: timezone, business hours, roles, policies, routes.

Called by `agent.config.parse` with the same error list, so every problem is
reported together, each with its key path (`policies[0] "standard":
steps[1]: notify: no contact or role named "ownr"`). Steps are numbered
from 1 where a person refers to them (`resolve_escalate_to = 3`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.fields import Section, show
from agent.policy import (
    AT_END,
    WHEN,
    BusinessHours,
    EscalationStep,
    Opening,
    Policy,
    Role,
    Rotation,
    Route,
    Updates,
    parse_openings,
)
from agent.vocab import SEVERITIES, Severity

Named = Callable[[Any, str, int], "tuple[Section, str] | None"]


@dataclass(frozen=True)
class Escalation:
    tz: ZoneInfo
    hours: BusinessHours | None
    roles: Mapping[str, Role]
    policies: Mapping[str, Policy]
    routes: tuple[Route, ...]


def timezone(sec: Section) -> ZoneInfo:
    name = sec.string("timezone", "localtime")
    if name == "localtime":
        try:
            return ZoneInfo("localtime")
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        sec.error("timezone", f'must be an IANA time zone like "Europe/London", got {show(name)}')
        return ZoneInfo("UTC")


def parse(root: Section, tz: ZoneInfo, contacts: Mapping[str, Any],
          items: Callable[[str], list[Any]], named: Named,
          others: frozenset[str] = frozenset()) -> Escalation:
    """`others`: more targets a step may name (a tenant's "provider:noc")."""
    hours = _hours(root, tz)
    roles = _roles(items("roles"), named, tz, contacts)
    targets = set(contacts) | {f"role:{r}" for r in roles} | others
    policies: dict[str, Policy] = {}
    for i, item in enumerate(items("policies")):
        got = named(item, "policies", i)
        if got is None:
            continue
        sec, name = got
        policy = _policy(sec, name, targets, hours is not None)
        sec.finish()
        if name in policies:
            sec.error("name", f"duplicate policy name {show(name)} (names must be unique)")
        elif name:
            policies[name] = policy
    routes = _routes(items("routes"), root, policies, hours is not None)
    return Escalation(tz, hours, roles, policies, routes)


def _hours(root: Section, tz: ZoneInfo) -> BusinessHours | None:
    raw = root.value("business_hours")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        root.error("business_hours", f"must be a table, got {show(raw)}")
        return None
    sec = Section(raw, "business_hours", root.errors, root.base_dir)
    windows: list[Opening] = []
    for j, text in enumerate(sec.string_list("hours")):
        parsed = parse_openings(text.strip().lower())
        if parsed is None:
            sec.error(f"hours[{j}]", 'must read like "mon-fri 09:00-17:30" or "sat,sun 10:00-14:00"'
                                     f", got {show(text)}")
        windows += parsed or []
    holidays: set[dt.date] = set()
    for j, text in enumerate(sec.string_list("holidays")):
        try:
            holidays.add(dt.date.fromisoformat(text))
        except ValueError:
            sec.error(f"holidays[{j}]", f'must be a date like "2026-12-25", got {show(text)}')
    if not windows and not sec.errors:
        sec.error("hours", 'at least one window is needed, e.g. ["mon-fri 09:00-17:30"]')
    sec.finish()
    return BusinessHours(tz, tuple(windows), frozenset(holidays))


def _roles(raw: list[Any], named: Named, tz: ZoneInfo, contacts: Mapping[str, Any]
           ) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for i, item in enumerate(raw):
        got = named(item, "roles", i)
        if got is None:
            continue
        sec, name = got
        before = len(sec.errors)
        members = sec.string_list("contacts")
        _known(sec, "contacts", members, set(contacts), "contact")
        rotation = None
        rot = sec.value("rotation")
        if rot is not None:
            rotation = _rotation(sec, rot, tz, set(contacts))
        if not members and rotation is None and len(sec.errors) == before:
            sec.error("contacts", "a role needs contacts or a [roles.rotation]")
        sec.finish()
        if name in roles:
            sec.error("name", f"duplicate role name {show(name)} (names must be unique)")
        elif name:
            roles[name] = Role(name, members, rotation)
    return roles


def _rotation(parent: Section, raw: Any, tz: ZoneInfo, contacts: set[str]) -> Rotation | None:
    if not isinstance(raw, dict):
        parent.error("rotation", f"must be a table, got {show(raw)}")
        return None
    sec = Section(raw, f"{parent.path}: rotation", parent.errors, parent.base_dir)
    members = sec.string_list("contacts")
    _known(sec, "contacts", members, contacts, "contact")
    if not members:
        sec.error("contacts", "must name at least one contact")
    start_text = sec.string("start", "2026-01-05 09:00")
    try:
        start = dt.datetime.fromisoformat(start_text).replace(tzinfo=tz)
    except ValueError:
        sec.error("start", f'must be a local date and time like "2026-01-05 09:00", '
                           f"got {show(start_text)}")
        start = dt.datetime(2026, 1, 5, 9, tzinfo=tz)
    shift = sec.duration("every", 7 * 86400.0)
    sec.finish()
    return Rotation(members, start, shift) if members else None


def _policy(sec: Section, name: str, targets: set[str], have_hours: bool) -> Policy:
    steps: list[EscalationStep] = []
    raw_steps = sec.value("steps", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        sec.error("steps", "at least one [[policies.steps]] is needed")
        raw_steps = []
    for j, item in enumerate(raw_steps):
        if not isinstance(item, dict):
            sec.error(f"steps[{j}]", f"must be a table, got {show(item)}")
            continue
        st = Section(item, f"{sec.path}: steps[{j}]", sec.errors, sec.base_dir)
        after = st.duration("after", 0.0, positive=False)
        notify = st.string_list("notify")
        if not notify:
            st.error("notify", 'must name contacts or roles, e.g. ["role:frontline", "owner"]')
        _known(st, "notify", notify, targets, "contact or role")
        when = st.choice("when", WHEN, "always")
        if when != "always" and not have_hours:
            st.error("when", f'"{when}" needs a [business_hours] table')
        st.finish()
        steps.append(EscalationStep(after, notify, when))
    for j in range(1, len(steps)):
        if steps[j].after < steps[j - 1].after:
            sec.error(f"steps[{j}]", "after: steps must be in order of their `after` delays")
    escalate_to = sec.integer("resolve_escalate_to", len(steps) or 1, low=1,
                              high=max(1, len(steps)))
    updates = None
    raw_updates = sec.value("updates")
    if raw_updates is not None:
        up = Section(raw_updates if isinstance(raw_updates, dict) else {},
                     f"{sec.path}: updates", sec.errors, sec.base_dir)
        audience = up.string_list("notify")
        _known(up, "notify", audience, targets, "contact or role")
        updates = Updates(audience, up.optional_duration("every"))
        up.finish()
    return Policy(
        name=name, steps=tuple(steps),
        ack_timeout=_off(sec, "ack_timeout", 900.0),
        ack_expiry=_off(sec, "ack_expiry", None),
        resolve_timeout=_off(sec, "resolve_timeout", None),
        resolve_escalate_to=escalate_to - 1,
        repeat_every=_off(sec, "repeat_every", None),
        repeat_max=sec.integer("repeat_max", 0, low=0, high=100),
        at_end=sec.choice("at_end", AT_END, "stop"),
        max_restarts=sec.integer("max_restarts", 1, low=0, high=100),
        reopen_window=sec.duration("reopen_window", 1800.0, positive=False),
        updates=updates,
    )


def _off(sec: Section, key: str, default: float | None) -> float | None:
    """A duration that may be switched off with "off"."""
    if sec.value(key) == "off":
        return None
    if not sec.has(key):
        return default
    return sec.duration(key)


def _routes(raw: list[Any], root: Section, policies: Mapping[str, Policy], have_hours: bool
            ) -> tuple[Route, ...]:
    routes: list[Route] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            root.error(f"routes[{i}]", f"must be a table, got {show(item)}")
            continue
        sec = Section(item, f"routes[{i}]", root.errors, root.base_dir)
        severity = Severity(sec.choice("severity", SEVERITIES, "high"))
        policy = sec.optional_string("policy")
        if policy is not None and policy not in policies:
            sec.error("policy", f"no policy named {show(policy)} (define it under [[policies]])")
        bho = sec.boolean("business_hours_only", False)
        if bho and not have_hours:
            sec.error("business_hours_only", "needs a [business_hours] table")
        sec.finish()
        if any(r.severity == severity for r in routes):
            sec.error("severity", f"a route for {show(severity)} is already defined")
        routes.append(Route(severity, policy, bho))
    return tuple(routes)


def _known(sec: Section, key: str, names: tuple[str, ...], known: set[str], what: str) -> None:
    for n in names:
        if n not in known:
            hint = ' (roles are written "role:NAME")' if f"role:{n}" in known else ""
            sec.error(key, f"no {what} named {show(n)}{hint}")

