"""The checks half of the config: [defaults] and [[checks]], and the `CheckConfig` they make.

Called by `agent.config.parse` (for the top level and for each tenant's tables,
agent/config_tenants.py) with the shared error list. Problems read like the
rest: `checks[3] "pos-terminal": timeout: must be shorter than the interval
(10s >= 10s)`; a conflict between the two [defaults] is reported once, there.
`items` and `named` read `[[key]]` arrays and their items' names for every
other section too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent import config_detect, config_escalation, config_guard, config_probe
from agent.config_contacts import Contact
from agent.fields import Section, format_duration, show
from agent.vocab import SEVERITIES, Severity
from checks.registry import KINDS

_NAME = config_guard.NAME


@dataclass(frozen=True)
class CheckConfig:
    name: str
    type: str
    interval: float
    timeout: float
    #: Consecutive failed runs (first run + quick re-checks) before the check is down.
    confirm: int
    #: Consecutive successes before a down check is up again.
    recover: int
    #: Delay between the quick re-checks that confirm a failure or a recovery.
    recheck_interval: float
    contacts: tuple[str, ...]
    severity: Severity
    description: str
    spec: Any
    #: Escalation policy name; None: page `contacts` once (a one-step policy).
    policy: str | None = None
    #: Labels for maintenance windows and routing ("pos", "shop-front").
    tags: tuple[str, ...] = ()
    #: Checks this one needs (the router, the uplink): while one of them is down,
    #: this check's outage is attached to theirs instead of paging on its own.
    depends_on: tuple[str, ...] = ()
    #: Learn this check's normal response time and open a low-severity "degraded"
    #: incident on a sustained slow-down.
    baseline: bool = True
    #: Observations whose normal level is learned too (cpu_percent, a queue depth ...):
    #: a sustained rise or fall is "degraded" in the same way.
    baseline_observations: tuple[str, ...] = ()
    #: Where it runs: "local" (this agent) and remote probes' names (agent/config_probe.py).
    locations: tuple[str, ...] = (config_probe.LOCAL,)
    #: How many locations must confirm it down before it is down.
    quorum: int = 1
    #: The check's own table as written (what a remote probe is sent to run it).
    table: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False,
                                     compare=False)
    #: The client it belongs to ([[tenants]]); "": the provider's own.
    tenant: str = ""

    @property
    def runs_here(self) -> bool:
        return config_probe.LOCAL in self.locations

    @property
    def remote(self) -> bool:
        """Runs at a remote probe (alone, or with others): its outage is a vote."""
        return self.locations != (config_probe.LOCAL,)



def items(root: Section, key: str) -> list[Any]:
    value = root.value(key, [])
    if not isinstance(value, list):
        root.error(key, f"must be an array of tables ([[{key}]]), got {show(value)}")
        return []
    return value


def named(item: Any, key: str, i: int, errors: list[str], base: Path
           ) -> tuple[Section, str] | None:
    """The section of `[[key]]` number i and its name ("" when missing or invalid)."""
    if not isinstance(item, dict):
        errors.append(f"{key}[{i}]: must be a table, got {show(item)}")
        return None
    name = item.get("name")
    label = f"{key}[{i}] {show(name)}" if isinstance(name, str) else f"{key}[{i}]"
    sec = Section(item, label, errors, base)
    name = sec.string("name")
    if name and not _NAME.fullmatch(name):
        sec.error("name", "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter "
                          f"or digit; got {show(name)}")
        name = ""
    return sec, name


@dataclass(frozen=True)
class _Defaults:
    """[defaults], read once; `times_ok` is False when interval or timeout there is wrong."""
    interval: float
    timeout: float
    times_ok: bool
    confirm: int
    recover: int
    recheck: float
    contacts: tuple[str, ...]
    severity: Severity
    policy: str | None


def _defaults(d: Section, contacts: Mapping[str, Contact],
              esc: config_escalation.Escalation) -> _Defaults:
    before = len(d.errors)
    interval = d.duration("interval", 60.0)
    timeout = d.duration("timeout", 10.0)
    times_ok = len(d.errors) == before
    if times_ok and timeout >= interval:
        d.error("timeout", f"must be shorter than the interval ({format_duration(timeout)} "
                           f">= {format_duration(interval)})")
        times_ok = False
    confirm = d.integer("confirm", 4, low=1, high=20)
    recover = d.integer("recover", 2, low=1, high=20)
    recheck = d.duration("recheck_interval", 2.0)
    names = d.string_list("contacts")
    _check_contacts(d, names, contacts)
    severity = Severity(d.choice("severity", SEVERITIES, "high"))
    policy = d.optional_string("policy")
    _check_policy(d, policy, esc)
    return _Defaults(interval, timeout, times_ok, confirm, recover, recheck, names, severity,
                     policy)


def _check_policy(sec: Section, name: str | None, esc: config_escalation.Escalation) -> None:
    if name is not None and name not in esc.policies:
        sec.error("policy", f"no policy named {show(name)} (define it under [[policies]])")


def _check_contacts(sec: Section, names: tuple[str, ...], contacts: Mapping[str, Contact]
                    ) -> None:
    for c in names:
        if c not in contacts:
            sec.error("contacts", f"no contact named {show(c)} (define it under [[contacts]])")


def checks(root: Section, defaults: Section, contacts: Mapping[str, Contact],
            esc: config_escalation.Escalation, errors: list[str], base: Path
            ) -> tuple[CheckConfig, ...]:
    d = _defaults(defaults, contacts, esc)
    out: list[CheckConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items(root, "checks")):
        found = named(item, "checks", i, errors, base)
        if found is None:
            continue
        sec, name = found
        if name in seen:
            sec.error("name", f"duplicate check name {show(name)} (names must be unique)")
        elif name:
            seen.add(name)
        kind_name = sec.string("type")
        interval, timeout = _times(sec, d)
        confirm = sec.integer("confirm", d.confirm, low=1, high=20)
        recover = sec.integer("recover", d.recover, low=1, high=20)
        recheck = sec.duration("recheck_interval", d.recheck)
        check_contacts = sec.string_list("contacts", d.contacts)
        if sec.has("contacts"):  # inherited ones were checked once, in [defaults]
            _check_contacts(sec, check_contacts, contacts)
        severity = Severity(sec.choice("severity", SEVERITIES, d.severity))
        policy = sec.optional_string("policy") if sec.has("policy") else d.policy
        if sec.has("policy"):
            _check_policy(sec, policy, esc)
        else:
            sec.value("policy")
        description = sec.string("description", "", nonempty=False)
        tags = sec.string_list("tags")
        depends_on = sec.string_list("depends_on")
        baseline = sec.boolean("baseline", True)
        baseline_observations = sec.string_list("baseline_observations")
        locations, quorum = config_probe.locations(sec, kind_name)
        kind = KINDS.get(kind_name)
        spec: Any = None
        if kind is None and kind_name:
            sec.error("type", f"unknown check type {show(kind_name)}; "
                              f"known: {', '.join(sorted(KINDS))}")
        elif kind is not None:
            spec = kind.parse(sec)
            sec.finish()  # without a known type, which keys belong is unknown
        out.append(CheckConfig(name, kind_name, interval, timeout, confirm, recover, recheck,
                               check_contacts, severity, description, spec, policy, tags,
                               depends_on, baseline, baseline_observations, locations, quorum,
                               MappingProxyType(dict(item))))
    config_detect.dependencies(out, lambda i, msg: errors.append(
        f"checks[{i}] {show(out[i].name)}: {msg}"))
    return tuple(out)


def _times(sec: Section, d: _Defaults) -> tuple[float, float]:
    """interval and timeout of one check; the timeout must be shorter than the interval.

    Only reported here when the check sets one of them itself: a conflict
    between the two defaults is reported once, under [defaults].
    """
    before = len(sec.errors)
    interval = sec.duration("interval", d.interval)
    timeout = sec.duration("timeout", d.timeout)
    own_i, own_t = sec.has("interval"), sec.has("timeout")
    if (len(sec.errors) > before or not (own_i or own_t) or timeout < interval
            or (not (own_i and own_t) and not d.times_ok)):
        return interval, timeout
    t, i = format_duration(timeout), format_duration(interval)
    if own_t:
        sec.error("timeout", f"must be shorter than the interval ({t} >= {i}"
                             f"{'' if own_i else ' from [defaults]'})")
    else:
        sec.error("interval", f"must be longer than the timeout ({i} <= {t} from [defaults])")
    return interval, timeout
