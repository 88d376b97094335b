"""Where checks run from, and the remote probe's own config file.

Central side (the main config):
- a check's `locations` (default `["local"]`: the agent itself) and `quorum`
  (how many locations must confirm it down before it is down; default: a
  majority of its locations). "local" is this agent; every other name is a
  remote probe added with `onwatch probe add NAME`;
- `[probes]`: when a probe that stopped reporting becomes a "location
  unreachable" incident (`unreachable_after`), with which severity and policy,
  and from when on a result is history rather than news (`late_after`).

Probe side (`onwatch probe --config probe.toml`): one `[probe]` table, see
`parse_probe_file`. The probe gets its checks from the central, so the file
holds only where the central is, who the probe is, and its buffer's bounds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent import config_guard
from agent.fields import Section, bad_url, show
from agent.vocab import SEVERITIES, Severity

LOCAL = "local"
#: Check kinds that cannot run on a probe (they are fed by requests to the central).
CENTRAL_ONLY_KINDS = frozenset({"heartbeat"})
#: Keys of a check table that only the central uses: not sent to probes.
CENTRAL_KEYS = frozenset({"contacts", "severity", "policy", "description", "tags",
                          "depends_on", "baseline", "baseline_observations", "locations",
                          "quorum"})


@dataclass(frozen=True, slots=True)
class ProbesConfig:
    """[probes] in the central's config."""

    unreachable_after: float = 120.0
    severity: Severity = Severity.HIGH
    policy: str | None = None
    #: A result that arrives this much after it was taken is history: it updates what
    #: that location saw, but cannot page on its own (None: 2 x the check's interval).
    late_after: float | None = None


def locations(sec: Section, check_type: str) -> tuple[tuple[str, ...], int]:
    """(locations, quorum) of one check table."""
    locs = sec.string_list("locations", (LOCAL,))
    if not locs:
        sec.error("locations", f'must name at least one location ("{LOCAL}" is this agent)')
        locs = (LOCAL,)
    if len(set(locs)) != len(locs):
        sec.error("locations", f"names a location twice: {show(list(locs))}")
    for loc in locs:
        if not config_guard.is_name(loc):
            sec.error("locations", f"{show(loc)} is not a probe name (letters, digits, '-', "
                                   "'_', '.')")
    if check_type in CENTRAL_ONLY_KINDS and locs != (LOCAL,):
        sec.error("locations", f'a {check_type} check is fed by requests to this agent; it '
                               f'can only run at "{LOCAL}"')
    if len(locs) == 1 and sec.value("quorum", 1) != 1:
        sec.error("quorum", f"needs locations to agree: give the check locations = "
                            f'["{LOCAL}", "<probe>", ...] (now {show(list(locs))}), or drop quorum')
        return tuple(locs), 1
    quorum = sec.integer("quorum", len(locs) // 2 + 1, low=1, high=max(1, len(locs)))
    return tuple(locs), quorum


def central(sec: Section, policies: frozenset[str]) -> ProbesConfig:
    after = sec.duration("unreachable_after", 120.0)
    severity = Severity(sec.choice("severity", SEVERITIES, Severity.HIGH))
    policy = sec.optional_string("policy")
    if policy is not None and policy not in policies:
        sec.error("policy", f"no policy named {show(policy)} (define it under [[policies]])")
    late = sec.optional_duration("late_after")
    sec.finish()
    return ProbesConfig(after, severity, policy, late)


@dataclass(frozen=True, slots=True)
class ProbeFile:
    """probe.toml: who this probe is and where its central is."""

    source: Path
    name: str
    #: The central's URLs: one, or every instance of a high-availability pair (a
    #: standby refuses results, and the probe moves on to the next).
    centrals: tuple[str, ...]
    key: str
    state_dir: Path
    #: How often results are sent at most (they go at once when this much has passed).
    report_every: float
    #: How often the list of checks is fetched again.
    refresh_every: float
    #: Bounds of the on-disk buffer kept while the central is unreachable: the oldest
    #: results are dropped first once either is passed.
    buffer_max_bytes: int
    buffer_max_age: float
    ca_file: str | None
    max_concurrency: int
    log_level: str


class ProbeFileError(Exception):
    def __init__(self, path: Path, errors: list[str]) -> None:
        super().__init__("\n".join(f"{path}: {e}" for e in errors))
        self.errors = errors


#: Top-level tables only a central config has: a file with one is not a probe.toml.
CENTRAL_TABLES = ("agent", "checks", "contacts", "policies", "tenants", "include")


def is_probe_file(path: Path) -> bool:
    """Whether `path` reads as a probe.toml ([probe], none of a central's tables)."""
    try:
        raw = config_guard.parse_toml(path.read_text(encoding="utf-8-sig"))
    except (OSError, config_guard.TomlProblem, UnicodeDecodeError):
        return False  # the central loader names the problem
    return "probe" in raw and not any(k in raw for k in CENTRAL_TABLES)


def parse_probe_file(path: Path) -> ProbeFile:
    try:
        raw = config_guard.parse_toml(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ProbeFileError(path, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except (config_guard.TomlProblem, UnicodeDecodeError) as exc:
        raise ProbeFileError(path, [str(exc)]) from None
    if "probe" not in raw and any(k in raw for k in CENTRAL_TABLES):
        raise ProbeFileError(path, [
            "this is a central onwatch config, not a probe's: give `onwatch probe --config` "
            "the probe's own file (start from deploy/probe.example.toml, or what `onwatch "
            "probe add NAME` printed on the central)"])
    errors: list[str] = []
    base = path.parent.resolve()
    root = Section(raw, "config", errors, base)
    table = root.value("probe", {})
    if not isinstance(table, dict):
        errors.append("probe: must be a table ([probe])")
        table = {}
    sec = Section(table, "probe", errors, base)
    name = sec.string("name")
    if name and not config_guard.is_name(name):
        sec.error("name", f"{show(name)} is not a probe name (letters, digits, '-', '_', '.')")
    centrals = sec.string_list("central")
    if not centrals:
        sec.error("central", 'is required: the central\'s URL, e.g. "https://onwatch.example.com"'
                             ' (or a list of them, one per instance)')
    for url in centrals:
        problem = bad_url(url, ("http", "https"))
        if problem:
            sec.error("central", f"{problem}, got {show(url)}")
    key = sec.secret("key")
    if key is None and not any(k in table for k in ("key", "key_file")):
        sec.error("key", "is required (give key or key_file: what `onwatch probe add NAME` "
                         "printed on the central)")
    # systemd's StateDirectory= (systemd/onwatch-probe.service) sets STATE_DIRECTORY.
    default_state = os.environ.get("STATE_DIRECTORY", "/var/lib/onwatch-probe").split(":")[0]
    state = Path(sec.string("state_dir", default_state))
    report = sec.duration("report_every", 2.0)
    refresh = sec.duration("refresh_every", 300.0)
    max_bytes = sec.size("buffer_max", 64 * 1024 * 1024)
    max_age = sec.duration("buffer_max_age", 86400.0)
    ca_file = sec.optional_string("ca_file")
    cap = sec.integer("max_concurrency", 100, low=1, high=10000)
    level = sec.choice("log_level", ("debug", "info", "warning", "error"), "info")
    sec.finish()
    root.finish()
    if errors:
        raise ProbeFileError(path, errors)
    return ProbeFile(path, name, tuple(u.rstrip("/") for u in centrals), key or "",
                     state if state.is_absolute() else base / state, report, refresh,
                     max_bytes, max_age, ca_file and str(base / ca_file), cap, level)
