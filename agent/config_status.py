"""The customer-facing half of the config: [web], [status], [[status.components]].

Called by `agent.config.parse` with the shared error list, after the checks
are known (a component names checks or tags, and both must exist). Problems
read like the rest: `status.components[1] "Card payments": checks: no check
named "pos"`. Nothing here is a secret except `[status.email] password`,
which is never quoted back.

What a component is: a name customers understand ("Card payments in store"),
an optional group, and the checks (by name or tag) whose open incidents make
its state. `notice = "manual"` means: when it breaks, wait for a person to
write the first public words instead of publishing the default notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.fields import Section, show, split_host_port

NOTICES = ("auto", "manual")
STARTTLS = ("off", "optional", "require")
LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
              ".jpeg": "image/jpeg", ".webp": "image/webp"}
LOGO_MAX = 256 * 1024
NAME_MAX = 80


class _Check(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class WebConfig:
    #: (host, port) of the public listener; None: no public listener, and the pages
    #: the outside needs (ack links, heartbeats, the status page) stay on `listen`.
    public_listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class Component:
    name: str
    #: A URL-safe name derived from `name`, for /badge/<slug>.svg.
    slug: str
    checks: tuple[str, ...]
    group: str = ""
    description: str = ""
    #: "auto": publish the default notice when it breaks; "manual": wait for a person.
    notice: str = "auto"


@dataclass(frozen=True)
class EmailConfig:
    """[status.email]: the SMTP relay subscriber mail leaves through."""

    host: str
    port: int
    sender: str
    starttls: str = "off"
    username: str | None = None
    password: str | None = None
    #: At most this many subscriber messages a minute (the relay's and the list's sake).
    max_per_minute: int = 60
    #: At most this many unconfirmed subscriptions at once: the form cannot fill the store.
    pending_max: int = 500
    #: One confirmation mail per address per this long: the form cannot mail-bomb anyone.
    cooldown: float = 600.0


@dataclass(frozen=True)
class StatusConfig:
    #: The business's name, shown as the page's title.
    title: str = "Service status"
    logo: Path | None = None
    components: tuple[Component, ...] = ()
    #: Days of history shown (bars and incidents).
    history_days: int = 90
    #: Maintenance windows starting within this long are announced on the page.
    announce_ahead: float = 7 * 86400.0
    email: EmailConfig | None = None
    #: How often the uptime rollup is written (and maintenance announced).
    rollup_every: float = 60.0
    #: Check name -> components it belongs to.
    by_check: dict[str, tuple[Component, ...]] = field(default_factory=dict)

    def component(self, slug: str) -> Component | None:
        return next((c for c in self.components if c.slug == slug), None)


def web(sec: Section) -> WebConfig:
    text = sec.optional_string("public_listen")
    hp = None
    if text is not None:
        hp = split_host_port(text)
        if hp is None:
            sec.error("public_listen", 'must be host:port like "0.0.0.0:8080" or "[::]:8080", '
                                       f"got {show(text)}")
    sec.finish()
    return WebConfig(hp)


def slugify(name: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(p for p in out.split("-") if p)[:64] or "component"


def parse(sec: Section, checks: Sequence[_Check]) -> StatusConfig:
    title = sec.string("title", "Service status")
    if len(title) > NAME_MAX:
        sec.error("title", f"must be at most {NAME_MAX} characters")
    logo = _logo(sec)
    days = sec.integer("history_days", 90, low=7, high=90)
    ahead = sec.duration("announce_ahead", 7 * 86400.0)
    default_notice = sec.choice("notice", NOTICES, "auto")
    every = sec.duration("rollup_every", 60.0)
    if not 1.0 <= every <= 3600.0:
        sec.error("rollup_every", "must be between 1s and 1h")
    comps = _components(sec, checks, default_notice)
    email_sec = sec.sub("email")
    email = _email(email_sec) if email_sec is not None and email_sec.raw else None
    sec.finish()
    by_check: dict[str, tuple[Component, ...]] = {}
    for c in comps:
        for name in c.checks:
            by_check[name] = (*by_check.get(name, ()), c)
    return StatusConfig(title, logo, comps, days, ahead, email, every, by_check)


def _logo(sec: Section) -> Path | None:
    name = sec.optional_string("logo")
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else sec.base_dir / name
    if path.suffix.lower() not in LOGO_TYPES:
        sec.error("logo", f"must be a {', '.join(LOGO_TYPES)} file, got {show(name)}")
        return None
    try:
        size = path.stat().st_size
    except OSError as exc:
        sec.error("logo", f"cannot read {path}: {exc.strerror or exc}")
        return None
    if size > LOGO_MAX:
        sec.error("logo", f"{path} is {size} bytes; keep it under {LOGO_MAX // 1024} KiB "
                          "(the page must stay small)")
        return None
    return path


def _components(sec: Section, checks: Sequence[_Check], default_notice: str
                ) -> tuple[Component, ...]:
    raw = sec.value("components", [])
    if not isinstance(raw, list):
        sec.error("components", "must be an array of tables ([[status.components]])")
        return ()
    names = {c.name for c in checks}
    out: list[Component] = []
    for i, item in enumerate(raw):
        label = f"{sec.path}.components[{i}]"
        if not isinstance(item, dict):
            sec.errors.append(f"{label}: must be a table, got {show(item)}")
            continue
        name = item.get("name")
        c = Section(item, f"{label} {show(name)}" if isinstance(name, str) else label,
                    sec.errors, sec.base_dir)
        comp = _component(c, checks, names, default_notice)
        if comp is None:
            continue
        if any(o.name == comp.name or o.slug == comp.slug for o in out):
            c.error("name", f"duplicate component name {show(comp.name)} (names must differ)")
            continue
        out.append(comp)
    return tuple(out)


def _component(c: Section, checks: Sequence[_Check], names: set[str], default_notice: str
               ) -> Component | None:
    name = c.string("name").strip()
    if len(name) > NAME_MAX:
        c.error("name", f"must be at most {NAME_MAX} characters")
    wanted = c.string_list("checks")
    tags = c.string_list("tags")
    for n in wanted:
        if n not in names:
            c.error("checks", f"no check named {show(n)}")
    known_tags = {t for ch in checks for t in ch.tags}
    for t in tags:
        if t not in known_tags:
            c.error("tags", f"no check has the tag {show(t)}")
    wanted_set = set(wanted)  # a set: a component may name thousands of checks
    members = tuple(ch.name for ch in checks
                    if ch.name in wanted_set or not set(ch.tags).isdisjoint(tags))
    if not wanted and not tags:
        c.error(None, "name the checks that make it (checks = [...] or tags = [...])")
    group = c.string("group", "", nonempty=False).strip()
    description = c.string("description", "", nonempty=False).strip()
    notice = c.choice("notice", NOTICES, default_notice)
    c.finish()
    if not name:
        return None
    return Component(name, slugify(name), members, group, description, notice)


def _email(sec: Section) -> EmailConfig:
    smtp = sec.string("smtp", "127.0.0.1:25")
    hp = split_host_port(smtp)
    if hp is None:
        sec.error("smtp", f'must be host:port like "127.0.0.1:25", got {show(smtp)}')
        hp = ("127.0.0.1", 25)
    sender = sec.string("from")
    if sender and "@" not in sender:
        sec.error("from", f"must be an e-mail address, got {show(sender)}")
    starttls = sec.choice("starttls", STARTTLS, "off")
    username = sec.optional_string("username")
    password = sec.secret("password")
    if username and password is None:
        sec.error("password", "is required with username (or password_file)")
    rate = sec.integer("max_per_minute", 60, low=1, high=10000)
    pending = sec.integer("pending_max", 500, low=1, high=100000)
    cooldown = sec.duration("cooldown", 600.0)
    sec.finish()
    return EmailConfig(hp[0], hp[1], sender, starttls, username, password, rate, pending,
                       cooldown)

