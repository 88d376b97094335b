"""Load one TOML file into frozen, typed objects; report every problem at once.

`load(path)` returns a `Config` or raises `ConfigError` whose `.problems` is
the full list, each naming its key path (`checks[2] "pos-terminal": timeout:
must be a duration like "10s", got 10`) and, for TOML syntax errors, the
line. The config is parsed once at start; nothing else reads the file.
Runtime state never lives on these objects (it lives in the store).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.fields import (
    Section,
    expand_secret,
    format_duration,
    read_secret_file,
    show,
    split_host_port,
)
from checks import KINDS

DEFAULT_LISTEN = "127.0.0.1:9847"
SEVERITIES = ("critical", "high", "low")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


@dataclass(frozen=True)
class Contact:
    name: str
    #: Apprise URLs, secrets expanded. Never log these; log `notifiers.redact(url)`.
    urls: tuple[str, ...]


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
    severity: str
    description: str
    spec: Any


@dataclass(frozen=True)
class Config:
    source: Path
    agent: AgentConfig
    contacts: Mapping[str, Contact]
    checks: tuple[CheckConfig, ...]

    def check(self, name: str) -> CheckConfig | None:
        return next((c for c in self.checks if c.name == name), None)

    def summary(self) -> str:
        kinds = sorted({c.type for c in self.checks})
        return (f"{self.source}: ok, {len(self.checks)} checks ({', '.join(kinds) or 'none'}), "
                f"{len(self.contacts)} contacts, state in {self.agent.state_dir}")


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the config file: {exc.strerror or exc}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from None
    return parse(raw, path)


def parse(raw: Mapping[str, Any], path: Path) -> Config:
    errors: list[str] = []
    base = path.parent.resolve()
    root = Section(raw, "config", errors, base)
    agent = _agent(root, base)
    defaults = root.sub("defaults")
    contacts = _contacts(root, errors, base)
    checks = _checks(root, defaults, contacts, errors, base)
    if defaults is not None:
        defaults.finish()
    root.finish()
    if errors:
        raise ConfigError(path, errors)
    return Config(path, agent, contacts, checks)


def _agent(root: Section, base: Path) -> AgentConfig:
    sec = root.sub("agent") or Section({}, "agent", root.errors, base)
    sec.path = "agent"
    env_state = os.environ.get("STATE_DIRECTORY", "/var/lib/onwatch").split(":")[0]
    state_dir = Path(sec.string("state_dir", env_state))
    if not state_dir.is_absolute():
        state_dir = base / state_dir
    listen = sec.string("listen", DEFAULT_LISTEN)
    hp = split_host_port(listen)
    if hp is None:
        sec.error("listen", f'must be host:port like "127.0.0.1:9847" or "[::1]:9847", '
                            f"got {show(listen)}")
        hp = ("127.0.0.1", 9847)
    cap = sec.integer("max_concurrency", 200, low=1, high=10000)
    level = sec.choice("log_level", ("debug", "info", "warning", "error"), "info")
    public = sec.url("public_url", ("http", "https"), "") or None
    sec.finish()
    return AgentConfig(state_dir, hp[0], hp[1], cap, level, public and public.rstrip("/"))


def _items(root: Section, key: str) -> list[Any]:
    value = root.value(key, [])
    if not isinstance(value, list):
        root.error(key, f"must be an array of tables ([[{key}]]), got {show(value)}")
        return []
    return value


def _named(item: Any, key: str, i: int, errors: list[str], base: Path) -> Section | None:
    if not isinstance(item, dict):
        errors.append(f"{key}[{i}]: must be a table, got {show(item)}")
        return None
    name = item.get("name")
    label = f'{key}[{i}] "{name}"' if isinstance(name, str) else f"{key}[{i}]"
    sec = Section(item, label, errors, base)
    name = sec.string("name")
    if name and not _NAME.match(name):
        sec.error("name", "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter "
                          f"or digit; got {show(name)}")
    return sec


def _contacts(root: Section, errors: list[str], base: Path) -> dict[str, Contact]:
    out: dict[str, Contact] = {}
    for i, item in enumerate(_items(root, "contacts")):
        sec = _named(item, "contacts", i, errors, base)
        if sec is None:
            continue
        name = sec.raw.get("name", "")
        urls = [expand_secret(sec, f"urls[{j}]", u) for j, u in enumerate(sec.string_list("urls"))]
        if sec.has("urls_file"):
            text = read_secret_file(sec, "urls_file", sec.string("urls_file"))
            urls += [ln.strip() for ln in text.splitlines() if ln.strip() and ln[0] != "#"]
        if not urls and not any(e.startswith(sec.path) for e in errors):
            sec.error("urls", "at least one Apprise URL is needed (urls or urls_file)")
        for j, url in enumerate(urls):
            problem = _apprise_problem(url)
            if problem:
                sec.error(f"urls[{j}]", problem)
        sec.finish()
        if name in out:
            sec.error("name", f'duplicate contact name "{name}"')
        out[name] = Contact(name, tuple(urls))
    return out


def _apprise_problem(url: str) -> str | None:
    # Imported here: Apprise loads its plugin table on first use (~100 ms), which
    # `onwatch validate` on a config with no contacts should not pay.
    from notifiers import apprise_url_problem

    return apprise_url_problem(url)


def _checks(root: Section, defaults: Section | None, contacts: Mapping[str, Contact],
            errors: list[str], base: Path) -> tuple[CheckConfig, ...]:
    d = defaults or Section({}, "defaults", errors, base)
    d_interval = d.duration("interval", 60.0)
    d_timeout = d.duration("timeout", 10.0)
    d_confirm = d.integer("confirm", 3, low=1, high=20)
    d_recover = d.integer("recover", 2, low=1, high=20)
    d_recheck = d.duration("recheck_interval", 5.0)
    d_contacts = d.string_list("contacts")
    d_severity = d.choice("severity", SEVERITIES, "high")
    for c in d_contacts:
        if c not in contacts:
            d.error("contacts", f'no contact named "{c}" (define it under [[contacts]])')
    out: list[CheckConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(_items(root, "checks")):
        sec = _named(item, "checks", i, errors, base)
        if sec is None:
            continue
        name = sec.raw.get("name", "")
        if name in seen:
            sec.error("name", f'duplicate check name "{name}" (names must be unique)')
        seen.add(name)
        kind_name = sec.string("type")
        interval = sec.duration("interval", d_interval)
        timeout = sec.duration("timeout", d_timeout)
        if timeout >= interval and not _has_error(errors, sec.path):
            sec.error("timeout", f"must be shorter than the interval ({format_duration(timeout)} "
                                 f">= {format_duration(interval)})")
        confirm = sec.integer("confirm", d_confirm, low=1, high=20)
        recover = sec.integer("recover", d_recover, low=1, high=20)
        recheck = sec.duration("recheck_interval", d_recheck)
        check_contacts = sec.string_list("contacts", d_contacts)
        for c in check_contacts:
            if c not in contacts:
                sec.error("contacts", f'no contact named "{c}" (define it under [[contacts]])')
        severity = sec.choice("severity", SEVERITIES, d_severity)
        description = sec.string("description", "", nonempty=False)
        kind = KINDS.get(kind_name)
        spec: Any = None
        if kind is None and kind_name:
            sec.error("type", f"unknown check type {show(kind_name)}; known: {', '.join(sorted(KINDS))}")
        elif kind is not None:
            spec = kind.parse(sec)
        if kind is not None:
            sec.finish()
        out.append(CheckConfig(name, kind_name, interval, timeout, confirm, recover, recheck,
                               check_contacts, severity, description, spec))
    return tuple(out)


def _has_error(errors: list[str], path: str) -> bool:
    return any(e.startswith(path + ": interval") or e.startswith(path + ": timeout")
               for e in errors)
