"""`[intake]`: alerts sent in by Alertmanager and by generic JSON webhooks.

Absent `[intake]` table: the intake endpoints answer 404 and say how to turn
them on. Present: `POST /api/v1/intake/alertmanager` and
`POST /api/v1/intake/webhook/<name>` (each `[[intake.webhooks]]` entry) accept
alerts, authenticated by `token` (default: the API token).

The mapping from an alert's labels to onwatch's words is explicit and
documented here and in `config.example.toml`:
- severity: the value of the label `severity_label`, looked up (lower-cased)
  in `[intake.severities]` (built-in: critical/page -> critical,
  error/high/warning/warn -> high, low/info/none -> low); missing or not in
  the table -> `default_severity`, noted on the incident's timeline.
- policy: the label `policy_label` naming a configured policy; otherwise the
  `[[routes]]` entry for the severity; otherwise `policy`.
- title and reason: the first of `title_annotations` / `reason_annotations`
  that the alert has; otherwise the alert's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.config_escalation import Named
from agent.fields import Section, show
from agent.vocab import SEVERITIES, Severity

SEVERITY_WORDS = tuple(str(s) for s in SEVERITIES)
_C, _H, _L = Severity.CRITICAL, Severity.HIGH, Severity.LOW
DEFAULT_SEVERITIES: Mapping[str, Severity] = MappingProxyType({
    "critical": _C, "page": _C, "error": _H, "high": _H, "warning": _H, "warn": _H, "low": _L,
    "info": _L, "none": _L,
})
#: Sources whose names are taken: a webhook may not be called like them.
RESERVED = ("alertmanager",)


@dataclass(frozen=True)
class Webhook:
    name: str
    #: Severity when the body does not give one.
    severity: Severity = Severity.HIGH
    #: Policy for this webhook's incidents; None: as for alerts (route, then [intake] policy).
    policy: str | None = None


@dataclass(frozen=True)
class IntakeConfig:
    #: None: the API token guards the intake too.
    token: str | None = None
    max_body_bytes: int = 1 << 20
    max_alerts: int = 500
    severity_label: str = "severity"
    severities: Mapping[str, Severity] = field(default_factory=lambda: DEFAULT_SEVERITIES)
    default_severity: Severity = Severity.HIGH
    policy_label: str = "onwatch_policy"
    #: The policy when neither a label nor a [[routes]] entry names one.
    policy: str = ""
    title_annotations: tuple[str, ...] = ("summary", "title")
    reason_annotations: tuple[str, ...] = ("description", "message")
    #: "alert": one incident per alert (its fingerprint); "group": one per Alertmanager group.
    key_by: str = "alert"
    webhooks: Mapping[str, Webhook] = field(default_factory=lambda: MappingProxyType({}))
    #: Every configured policy name (the mapping checks label values against it).
    policies: frozenset[str] = frozenset()


def parse(root: Section, table: Callable[[str], Section], policies: frozenset[str],
          named: Named) -> IntakeConfig | None:
    """The `[intake]` table, or None when there is none; problems go to `root.errors`."""
    if not root.has("intake"):
        root.value("intake")  # a known key, for "did you mean"
        return None
    sec = table("intake")
    token = sec.secret("token")
    if token is not None and len(token) < 16:
        sec.error("token", "must be at least 16 characters (it guards the intake)")
    max_body = sec.size("max_body_bytes", 1 << 20)
    max_alerts = sec.integer("max_alerts", 500, low=1, high=10000)
    severity_label = sec.string("severity_label", "severity")
    severities = _severities(sec)
    default_severity = Severity(sec.choice("default_severity", SEVERITY_WORDS, "high"))
    policy_label = sec.string("policy_label", "onwatch_policy")
    policy = sec.string("policy", "")
    if not policy:
        sec.error("policy", "is required: the escalation policy for alerts that no label and "
                            "no [[routes]] entry assigns one (define it under [[policies]])")
    elif policy not in policies:
        sec.error("policy", f"no policy named {show(policy)} (define it under [[policies]])")
    titles = sec.string_list("title_annotations", ("summary", "title"))
    reasons = sec.string_list("reason_annotations", ("description", "message"))
    key_by = sec.choice("key_by", ("alert", "group"), "alert")
    hooks = _webhooks(sec, policies, named)
    sec.finish()
    return IntakeConfig(token, max_body, max_alerts, severity_label, severities,
                        default_severity, policy_label, policy, titles, reasons, key_by,
                        MappingProxyType(hooks), policies)


def _severities(sec: Section) -> Mapping[str, Severity]:
    """Built-in mapping, extended (and overridden) by `[intake.severities]`."""
    own = sec.table_of_strings("severities")
    out = dict(DEFAULT_SEVERITIES)
    for value, severity in own.items():
        if severity not in SEVERITY_WORDS:
            sec.error(f"severities.{value}", f"must be one of {', '.join(SEVERITY_WORDS)}; "
                                             f"got {show(severity)}")
        else:
            out[value.lower()] = Severity(severity)
    return MappingProxyType(out)


def _webhooks(sec: Section, policies: frozenset[str], named: Named) -> dict[str, Webhook]:
    raw: Any = sec.value("webhooks", [])
    if not isinstance(raw, list):
        sec.error("webhooks", f"must be an array of tables ([[intake.webhooks]]), got {show(raw)}")
        return {}
    out: dict[str, Webhook] = {}
    for i, item in enumerate(raw):
        if (got := named(item, "intake.webhooks", i)) is None:
            continue
        hook, name = got
        if name in RESERVED or name in out:
            hook.error("name", f"{show(name)} is taken (by {', '.join(RESERVED)} or another "
                               "webhook): the name is part of the URL")
            name = ""
        severity = Severity(hook.choice("severity", SEVERITY_WORDS, "high"))
        policy = hook.optional_string("policy")
        if policy is not None and policy not in policies:
            hook.error("policy", f"no policy named {show(policy)} (define it under [[policies]])")
            policy = None
        hook.finish()
        if name:
            out[name] = Webhook(name, severity, policy)
    return out
