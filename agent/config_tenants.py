"""A provider's clients in the config: `[[tenants]]` and `include = ["clients/*.toml"]`.

Called by `agent.config.parse` after the provider's own tables. A tenant is
a table (an item of `[[tenants]]`, or the whole of one included file) with
`name`, `title`, `timezone`, `[business_hours]`, `[defaults]`, `[[contacts]]`,
`[[roles]]`, `[[policies]]`, `[[routes]]`, `[[checks]]`, `[[maintenance]]`,
`[notifications]` (its storm settings only) and `[status]` (with `host`):
the same keys, read by the same readers, as the top level's. Inside it
names are its own: its checks name its contacts and policies, its status
components its checks; another client may have a "shop" too.

Why qualified names: after loading, everything a tenant defines is renamed
`<tenant>.<name>` ("acme.shop", "acme.ana", "role:acme.frontline") and added
to the one flat config the rest of the agent reads. The store, the runner,
the engine, the metrics and the outbox key everything by name and need no
tenant argument to keep two clients' "shop" apart; and a name alone says
whose it is (agent/tenancy.py), even for an incident whose check was since
removed from the config. To keep that unambiguous, a tenant's name has no
"." and no provider name may start with "<tenant>.".

A tenant's policy steps may also page the provider's own people, named
`provider:noc` or `provider:role:noc` (the top level's contacts and roles):
nobody at the client answered, the provider's staff take over.

Problems read `tenants[0] "acme": checks[1] "shop": timeout: ...` or, for an
included file, `clients/acme.toml: checks[1] "shop": timeout: ...`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent import config_guard
from agent.config_escalation import Escalation
from agent.config_status import StatusConfig
from agent.detect.maintenance import MaintenanceWindow
from agent.fields import Section, show
from agent.policy import Policy, Role, Updates

if TYPE_CHECKING:
    from agent.config import CheckConfig
    from agent.config_contacts import Contact

#: No "." (it separates a tenant from its names), no "--" and no "-" or "_" at an end
#: ("--" separates it from its status components' slugs, which never hold one).
TENANT_NAME = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
_GLOB = re.compile(r"[*?\[]")
#: In a tenant's policy steps: one of the provider's contacts or roles ("provider:noc").
PROVIDER_PREFIX = "provider:"


@dataclass(frozen=True)
class Part:
    """One tenant's tables as parsed, with its own (unqualified) names."""

    contacts: Mapping[str, Contact]
    escalation: Escalation
    checks: tuple[CheckConfig, ...]
    default_policy: str | None
    status: StatusConfig
    host: str | None
    maintenance: tuple[MaintenanceWindow, ...] = ()
    storm: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Tenant:
    name: str
    #: How the client is called on its pages and reports ("Acme Bakery").
    title: str
    #: Its time zone, business hours and routes; its roles and policies, qualified.
    escalation: Escalation
    #: Its [defaults] policy (qualified): declared incidents of its people page with it.
    default_policy: str | None
    #: Its status page: its components only, served at /status/<name> and on `host`.
    status: StatusConfig
    host: str | None = None
    #: Its [notifications] storm settings, those it set (the rest are the provider's).
    storm: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    #: The file it was read from (the main config for a [[tenants]] item).
    source: Path = field(default=Path("."), compare=False)

    @property
    def tz(self) -> ZoneInfo:
        return self.escalation.tz


@dataclass(frozen=True)
class Tenants:
    tenants: Mapping[str, Tenant]
    contacts: Mapping[str, Contact]
    checks: tuple[CheckConfig, ...]
    roles: Mapping[str, Role]
    policies: Mapping[str, Policy]
    maintenance: tuple[MaintenanceWindow, ...] = ()


#: (raw table, errors, base directory, default time zone) -> the tenant's parsed part.
PartReader = Callable[[Mapping[str, Any], list[str], Path, ZoneInfo], Part]


def parse(root: Section, path: Path, tz: ZoneInfo, read: PartReader,
          load: Callable[[Path], tuple[Mapping[str, Any] | None, str | None]]) -> Tenants:
    """Every tenant of the config; problems go to root's error list, each naming its file."""
    found: list[tuple[str, Mapping[str, Any], Path, str]] = []  # label, raw, source, stem
    items = root.value("tenants", [])
    if not isinstance(items, list):
        root.error("tenants", f"must be an array of tables ([[tenants]]), got {show(items)}")
        items = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            root.error(f"tenants[{i}]", f"must be a table, got {show(item)}")
            continue
        name = item.get("name")
        label = f"tenants[{i}] {show(name)}" if isinstance(name, str) else f"tenants[{i}]"
        found.append((label, item, path, ""))
    for file in _included(root, path.parent):
        if file.resolve() == path.resolve():  # "*.toml" next to the central config
            continue
        raw, problem = load(file)
        shown = _relative(file, path.parent)
        if raw is None:
            root.errors.append(f"{shown}: {problem}")
            continue
        found.append((shown, raw, file, file.stem))
    out: dict[str, Tenant] = {}
    contacts: dict[str, Contact] = {}
    checks: list[CheckConfig] = []
    roles: dict[str, Role] = {}
    policies: dict[str, Policy] = {}
    hosts: dict[str, str] = {}
    windows: list[MaintenanceWindow] = []
    for label, raw, source, stem in found:
        errors: list[str] = []
        sec = Section(raw, label, errors, source.parent.resolve())
        name = sec.string("name", stem) if stem else sec.string("name")
        if name and not (TENANT_NAME.fullmatch(name) and len(name) <= 32):
            sec.error("name", "must be 1-32 letters and digits, single '-' or '_' between them "
                              f"(no '.': it separates a tenant's name from its checks'), got "
                              f"{show(name)}")
            name = ""
        title = sec.string("title", name or "client")
        part = read({k: v for k, v in raw.items() if k not in ("name", "title")}, errors,
                    source.parent.resolve(), tz)
        root.errors.extend(e if e.startswith(label) else f"{label}: {e.removeprefix('config: ')}"
                           for e in map(_provider_hint, errors))
        if not name:
            continue
        if name in out:
            root.errors.append(f"{label}: name: duplicate tenant name {show(name)} (another "
                               f"is read from {_relative(out[name].source, path.parent)})")
            continue
        tenant = _qualified(name, title, part, source)
        if tenant.host is not None:
            if tenant.host in hosts:
                root.errors.append(f"{label}: status: host: {show(tenant.host)} is already "
                                   f"the status page of tenant {show(hosts[tenant.host])}")
            hosts[tenant.host] = name
        out[name] = tenant
        contacts |= {q(name, c.name): replace(c, name=q(name, c.name))
                     for c in part.contacts.values()}
        checks += [_check(name, c) for c in part.checks]
        roles |= tenant.escalation.roles
        policies |= tenant.escalation.policies
        windows += [_window(name, w, part.checks) for w in part.maintenance]
    return Tenants(MappingProxyType(out), contacts, tuple(checks), roles, policies,
                   tuple(windows))


def q(tenant: str, name: str) -> str:
    """A tenant's own name as the rest of the agent knows it."""
    return f"{tenant}.{name}"


def provider_names(errors: list[str], tenants: Mapping[str, Tenant], what: str,
                   names: Mapping[str, Any] | tuple[str, ...]) -> None:
    """The provider's own names may not look like a tenant's (see the module's contract)."""
    for n in names:
        head = n.partition(".")[0]
        if "." in n and head in tenants:
            errors.append(f"config: {what}: {show(n)}: names starting with \"{head}.\" are "
                          f"tenant {show(head)}'s; rename this one")


#: Top-level tables only the provider's config may have.
_PROVIDER_ONLY = ("agent", "web", "probes", "intake", "templates", "include", "tenants")
_UNKNOWN = re.compile(r'^(config|notifications): unknown key "([^"]+)"')


def _provider_hint(problem: str) -> str:
    """A provider-only key in a client's file says where it belongs (not just "unknown")."""
    m = _UNKNOWN.match(problem)
    if m is None:
        return problem
    if m.group(1) == "config" and m.group(2) in _PROVIDER_ONLY:
        return (f"config: {m.group(2)}: is the provider's: set it in the central config, "
                "not in a client's")
    if m.group(1) == "notifications" and "(did you mean" not in problem:
        return (f"{problem} (a client's [notifications] sets "
                "storm_threshold, storm_window and storm_interval only; the rest is the "
                "provider's)")
    return problem


def _included(root: Section, base: Path) -> list[Path]:
    patterns = root.value("include", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        root.error("include", f'must be a list of file patterns like ["clients/*.toml"], got '
                              f"{show(patterns)}")
        return []
    files: list[Path] = []
    for j, pattern in enumerate(patterns):
        if Path(pattern).is_absolute():
            matched = sorted(Path(pattern).parent.glob(Path(pattern).name))
        else:
            matched = sorted(base.glob(pattern))
        if not matched and not _GLOB.search(pattern):  # a plain file name that is not there
            root.error(f"include[{j}]", f"no file {show(pattern)} (relative to {base})")
        files += [m for m in matched if m.is_file() and m not in files]
    return files


def _relative(file: Path, base: Path) -> str:
    try:
        return str(file.relative_to(base))
    except ValueError:
        return str(file)


def provider_targets(contacts: Mapping[str, Any], roles: Mapping[str, Any]) -> frozenset[str]:
    """What a tenant's steps may name of the provider's: "provider:noc", "provider:role:noc"."""
    return frozenset({f"{PROVIDER_PREFIX}{c}" for c in contacts}
                     | {f"{PROVIDER_PREFIX}role:{r}" for r in roles})


def _target(tenant: str, name: str) -> str:
    if name.startswith(PROVIDER_PREFIX):  # the provider's staff, paged for the client
        return name.removeprefix(PROVIDER_PREFIX)
    if name.startswith("role:"):
        return f"role:{q(tenant, name[5:])}"
    return q(tenant, name)


def _qualified(name: str, title: str, part: Part, source: Path) -> Tenant:
    def targets(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_target(name, n) for n in names)

    esc = part.escalation
    roles = {q(name, r.name): replace(
        r, name=q(name, r.name), contacts=targets(r.contacts),
        rotation=replace(r.rotation, contacts=targets(r.rotation.contacts))
        if r.rotation else None) for r in esc.roles.values()}
    policies = {q(name, p.name): replace(
        p, name=q(name, p.name),
        steps=tuple(replace(s, notify=targets(s.notify)) for s in p.steps),
        updates=Updates(targets(p.updates.notify), p.updates.every) if p.updates else None)
        for p in esc.policies.values()}
    routes = tuple(replace(r, policy=q(name, r.policy) if r.policy else None)
                   for r in esc.routes)
    escalation = Escalation(esc.tz, esc.hours, MappingProxyType(roles),
                            MappingProxyType(policies), routes)
    comps = tuple(replace(c, slug=f"{name}--{c.slug}", checks=targets(c.checks))
                  for c in part.status.components)
    by_check: dict[str, tuple[Any, ...]] = {}
    for c in comps:
        for n in c.checks:
            by_check[n] = (*by_check.get(n, ()), c)
    status = replace(part.status, title=part.status.title if part.status.title !=
                     StatusConfig.title else title, components=comps, by_check=by_check)
    default = q(name, part.default_policy) if part.default_policy else None
    return Tenant(name, title, escalation, default, status, part.host,
                  MappingProxyType(dict(part.storm)), source)


def _window(tenant: str, w: MaintenanceWindow, checks: tuple[CheckConfig, ...]
            ) -> MaintenanceWindow:
    """A client's window over its own checks: a tag becomes the client's checks that carry
    it (another client's checks may carry the same tag)."""
    names = set(w.checks) | {c.name for c in checks if not w.tags.isdisjoint(c.tags)}
    return replace(w, id=f"{tenant}:{w.id}", checks=frozenset(q(tenant, n) for n in names),
                   tags=frozenset())


def _check(tenant: str, c: CheckConfig) -> CheckConfig:
    qualified = q(tenant, c.name)
    return replace(c, name=qualified, tenant=tenant,
                   contacts=tuple(q(tenant, n) for n in c.contacts),
                   policy=q(tenant, c.policy) if c.policy else None,
                   depends_on=tuple(q(tenant, n) for n in c.depends_on),
                   table=MappingProxyType({**c.table, "name": qualified}))


def status_host(sec: Section) -> str | None:
    """`[status] host` of a tenant: the host name its status page answers on."""
    host = sec.optional_string("host")
    if host is None:
        return None
    host = host.strip().lower()
    if not config_guard.NAME.fullmatch(host.replace(":", "-")) or "/" in host:
        sec.error("host", f'must be a host name like "status.acme.example", got {show(host)}')
        return None
    return host
