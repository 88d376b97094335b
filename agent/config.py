"""Load one TOML file into frozen, typed objects; report every problem at once.

`load(path)` returns a `Config` or raises `ConfigError` whose `.problems` is
the full list, each naming its key path (`checks[2] "pos-terminal": timeout:
must be a duration like "10s", got 10`) and, for TOML syntax errors, the
line. The config is parsed once at start; nothing else reads the file.
Runtime state never lives on these objects (it lives in the store).

Every problem reads `<section>: <key>: <what is wrong>`, the section being
`config` (top level), `agent`, `defaults`, `checks[i] "name"` or
`contacts[i] "name"` (i counts from 0). Contact URLs hold secrets: no
message ever quotes one.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from agent import (
    config_checks,
    config_contacts,
    config_detect,
    config_escalation,
    config_guard,
    config_intake,
    config_notify,
    config_probe,
    config_replies,
    config_service,
    config_status,
    config_tenants,
)
from agent.config_checks import CheckConfig as CheckConfig  # the config's types, in one place
from agent.config_contacts import Contact
from agent.config_escalation import Named
from agent.config_notify import DeliveryPolicy
from agent.detect.maintenance import MaintenanceWindow
from agent.fields import (
    Section,
    show,
    split_host_port,
)

DEFAULT_LISTEN = "127.0.0.1:9847"
_NAME = config_guard.NAME


class ConfigError(Exception):
    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path
    listen_host: str
    listen_port: int
    max_concurrency: int
    log_level: str
    #: Base URL people use to reach this agent's web pages (for links in messages);
    #: None: derived from the address actually bound (listen may use port 0).
    public_url: str | None
    #: The business's time zone: business hours, rotations and times in messages.
    tz: ZoneInfo
    #: Bearer token for /api/v1; None: the agent keeps one in `<state_dir>/api.token`.
    api_token: str | None = None
    service: config_service.ServiceSettings = field(default_factory=config_service.ServiceSettings)
    #: A PostgreSQL URL (agent/store/pg.py): several instances share it, one leads;
    #: None: SQLite in `state_dir`. It may hold a password: show only `store_shown`.
    store: str | None = None
    #: This instance's name among those sharing a store (logs, /healthz, PostgreSQL's
    #: application_name); default: the host's name.
    instance: str = "onwatch"

    @property
    def store_shown(self) -> str:
        from agent.store.dsn import redact

        return redact(self.store) if self.store else str(self.state_dir / "onwatch.db")


@dataclass(frozen=True)
class Config:
    source: Path
    agent: AgentConfig
    #: Read-only (a mappingproxy), like everything else here.
    contacts: Mapping[str, Contact]
    checks: tuple[CheckConfig, ...]
    escalation: config_escalation.Escalation
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    #: [templates] overrides: "<event>", "<event>_title", "<event>_sms" -> text.
    templates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Maintenance windows from the config (more are opened at run time, in the store).
    maintenance: tuple[MaintenanceWindow, ...] = ()
    #: [intake]: alerts from Alertmanager and webhooks; None: the intake is off.
    intake: config_intake.IntakeConfig | None = None
    #: [defaults] policy: what checks without their own, and declared incidents, page with.
    default_policy: str | None = None
    #: [web] (the public listener) and [status] (the customer-facing status page).
    web: config_status.WebConfig = field(default_factory=config_status.WebConfig)
    status: config_status.StatusConfig = field(default_factory=config_status.StatusConfig)
    #: Reply channels ([replies.*] and each contact's [contacts.reply]).
    replies: config_replies.Replies = field(default_factory=config_replies.Replies)
    #: [probes]: remote probes that stop reporting (agent/probe_intake.py).
    probes: config_probe.ProbesConfig = field(default_factory=config_probe.ProbesConfig)
    #: The provider's clients by name (agent/config_tenants.py); their checks, contacts,
    #: roles and policies are in the tables above too, under qualified names.
    tenants: Mapping[str, config_tenants.Tenant] = field(
        default_factory=lambda: MappingProxyType({}))

    def check(self, name: str) -> CheckConfig | None:
        return self._by_name.get(name)

    @functools.cached_property
    def _by_name(self) -> Mapping[str, CheckConfig]:
        # A lookup index, built once: heartbeats, the API and the runner look checks up
        # by name on every request, and a scan is O(N) at 10,000 checks.
        return MappingProxyType({c.name: c for c in self.checks})

    def summary(self) -> str:
        kinds = sorted({c.type for c in self.checks})
        return (f"{self.source}: ok, {len(self.checks)} checks ({', '.join(kinds) or 'none'}), "
                f"{len(self.contacts)} contacts, "
                + (f"{len(self.tenants)} tenants ({', '.join(sorted(self.tenants))}), "
                   if self.tenants else "")
                + f"state in {self.agent.state_dir}")


def load(path: str | Path) -> Config:
    path = Path(path)
    raw, problem = _read(path)
    if raw is None:
        raise ConfigError(path, [f"config: {problem}"])
    return parse(raw, path)


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A TOML file's tables, or None and what is wrong ("line 3: ...")."""
    try:
        # utf-8-sig: a file saved by Notepad starts with a BOM, which TOML rejects.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return None, f"cannot read the file: {exc.strerror or exc}"
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        return None, f"line {line}: not UTF-8 text"
    try:
        return config_guard.parse_toml(text), None
    except config_guard.TomlProblem as exc:
        return None, str(exc).removeprefix("config: ")


def parse(raw: Mapping[str, Any], path: Path) -> Config:
    errors: list[str] = []
    base = path.parent.resolve()
    root = Section(raw, "config", errors, base)
    agent = _agent(_table(root, "agent"), base)
    defaults = _table(root, "defaults")
    named: Named = lambda item, key, i: config_checks.named(item, key, i, errors, base)  # noqa: E731
    reply_sections: dict[str, Section] = {}
    contacts = config_contacts.parse(config_checks.items(root, "contacts"), named, reply_sections)
    items = functools.partial(config_checks.items, root)
    esc = config_escalation.parse(root, agent.tz, contacts, items, named)
    checks = config_checks.checks(root, defaults, contacts, esc, errors, base)
    own_checks = checks  # the provider's status page lists its own checks' components
    staff = config_tenants.provider_targets(contacts, esc.roles)
    ten = config_tenants.parse(root, path, agent.tz, functools.partial(_part, staff=staff),
                               _read)
    for what, names in (("checks", tuple(c.name for c in checks)), ("contacts", contacts),
                        ("roles", esc.roles), ("policies", esc.policies)):
        config_tenants.provider_names(errors, ten.tenants, what, names)
    contacts |= ten.contacts
    esc = replace(esc, roles=MappingProxyType({**esc.roles, **ten.roles}),
                  policies=MappingProxyType({**esc.policies, **ten.policies}))
    checks += ten.checks
    windows = (*config_detect.maintenance(items("maintenance"), root, agent.tz, checks),
               *ten.maintenance)
    delivery = config_notify.delivery(_table(root, "notifications"))
    templates = config_notify.templates(_table(root, "templates"))
    intake = config_intake.parse(root, lambda key: _table(root, key), frozenset(esc.policies),
                                 named)
    web = config_status.web(_table(root, "web"))
    status = config_status.parse(_table(root, "status"), own_checks)
    replies = config_replies.parse(_table(root, "replies"), reply_sections)
    probes = config_probe.central(_table(root, "probes"), frozenset(esc.policies))
    defaults.finish()
    root.finish()
    config_guard.nothing_watched(raw, checks, errors)
    _probes_page_someone(checks, probes, esc, defaults.raw.get("policy"), errors)
    if errors:
        raise ConfigError(path, errors)
    policy = defaults.raw.get("policy")  # validated with the other defaults
    return Config(path, agent, MappingProxyType(contacts), checks, esc, delivery,
                  MappingProxyType(templates), windows, intake,
                  policy if isinstance(policy, str) and policy in esc.policies else None,
                  web, status, replies, probes, ten.tenants)


def _part(raw: Mapping[str, Any], errors: list[str], base: Path, tz: ZoneInfo, *,
          staff: frozenset[str] = frozenset()) -> config_tenants.Part:
    """A tenant's own tables, read by the top level's readers (agent/config_tenants.py)."""
    root = Section(raw, "config", errors, base)
    tz = config_escalation.timezone(root) if root.has("timezone") else tz
    named: Named = lambda item, key, i: config_checks.named(item, key, i, errors, base)  # noqa: E731
    replies: dict[str, Section] = {}
    contacts = config_contacts.parse(config_checks.items(root, "contacts"), named, replies)
    for name in replies:
        errors.append(f"contacts {show(name)}: reply: reply channels are the provider's "
                      "(the top level's [[contacts]])")
    esc = config_escalation.parse(root, tz, contacts, functools.partial(config_checks.items, root),
                                  named, staff)
    defaults = _table(root, "defaults")
    checks = config_checks.checks(root, defaults, contacts, esc, errors, base)
    windows = config_detect.maintenance(config_checks.items(root, "maintenance"), root, tz,
                                        checks)
    status_sec = _table(root, "status")
    host = config_tenants.status_host(status_sec)
    status = config_status.parse(status_sec, checks)
    if status.email is not None:
        errors.append("status: email: subscriber mail is the provider's ([status.email] at "
                      "the top level)")
    storm = config_notify.storm_overrides(_table(root, "notifications"))
    policy = defaults.raw.get("policy")
    defaults.finish()
    root.finish()
    return config_tenants.Part(contacts, esc, checks,
                               policy if isinstance(policy, str) and policy in esc.policies
                               else None, status, host, windows, storm)


def _probes_page_someone(checks: tuple[CheckConfig, ...], probes: config_probe.ProbesConfig,
                         esc: config_escalation.Escalation, default_policy: Any,
                         errors: list[str]) -> None:
    """A probe that stops reporting is an incident: someone must be paged for it."""
    remote = sorted({loc for c in checks for loc in c.locations if loc != config_probe.LOCAL})
    if not remote or probes.policy or default_policy:
        return
    if any(r.severity == probes.severity and r.policy for r in esc.routes):
        return
    errors.append(f"probes: policy: checks run at remote locations ({', '.join(remote)}); "
                  "name the policy that pages when one stops reporting ([probes] policy = "
                  "\"...\", or [defaults] policy)")


def _table(root: Section, key: str) -> Section:
    """The top-level table `key`, its section named plainly `key` (not `config.key`)."""
    value = root.value(key, {})
    if not isinstance(value, dict):
        root.error(key, f"must be a table ([{key}]), got {show(value)}")
        value = {}
    return Section(value, key, root.errors, root.base_dir)


def _agent(sec: Section, base: Path) -> AgentConfig:
    # systemd's StateDirectory= sets STATE_DIRECTORY, ":"-separated when it names several.
    env_state = os.environ.get("STATE_DIRECTORY", "/var/lib/onwatch").split(":")[0]
    state_dir = Path(sec.string("state_dir", env_state))
    if not state_dir.is_absolute():
        state_dir = base / state_dir
    listen = sec.string("listen", DEFAULT_LISTEN)
    hp = split_host_port(listen)
    if hp is None:
        if listen.strip():  # an empty one is reported by `string`
            sec.error("listen", f'must be host:port like "127.0.0.1:9847" or "[::1]:9847", '
                                f"got {show(listen)}")
        hp = ("127.0.0.1", 9847)
    cap = sec.integer("max_concurrency", 200, low=1, high=10000)
    level = sec.choice("log_level", ("debug", "info", "warning", "error"), "info")
    public = sec.url("public_url", ("http", "https"), "") or None
    tz = config_escalation.timezone(sec)
    token = sec.secret("api_token")
    if token is not None and len(token) < 16:
        sec.error("api_token", "must be at least 16 characters (it guards the API)")
    service = config_service.parse(sec)
    store = _store_url(sec)
    instance = sec.string("instance", socket.gethostname() or "onwatch")
    sec.finish()
    return AgentConfig(state_dir, hp[0], hp[1], cap, level, public and public.rstrip("/"), tz,
                       token, service, store, instance[:60])


def _store_url(sec: Section) -> str | None:
    """`[agent] store` (or `store_file`): a postgresql:// URL; its password is never shown."""
    from agent.store.dsn import is_postgresql, redact

    url = sec.secret("store")
    if url is None or not url.strip():
        return None
    url = url.strip()
    if not is_postgresql(url):
        key, what = ("store_file", "must hold") if sec.has("store_file") else ("store", "must be")
        sec.error(key, f'{what} a PostgreSQL URL like "postgresql://onwatch@db.example/'
                       f'onwatch" (leave it out for SQLite in state_dir), got {redact(url)!r}')
        return None
    return url
