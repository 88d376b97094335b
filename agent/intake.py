"""Alerts sent in from outside, parsed and mapped into typed `AlertEvent`s. Pure.

`alertmanager(payload, cfg)` reads Alertmanager's webhook body (version 4:
`receiver`, `status`, `alerts[]` each with `status`, `labels`,
`annotations`, `startsAt`, `endsAt`, `generatorURL`, `fingerprint`; and
`groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`,
`groupKey`, `truncatedAlerts`); `webhook(payload, hook, cfg)` reads the
generic body:

    {"status": "firing" | "resolved", "title": "...", "key": "...",
     "reason": "...", "severity": "critical" | "high" | "low", "labels": {...}}

(only `title` is required; `key` defaults to the title, `status` to firing).

Either raises `IntakeError` naming the field and what is wrong (the caller
answers 400 with it and applies nothing), or returns one event per incident
key: a request carrying several alerts for the same key yields one event
(the last one), so it is at most one page. Nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.config_intake import SEVERITY_WORDS, IntakeConfig, Webhook
from agent.vocab import Severity

MAX_LABELS = 64
MAX_LABEL_VALUE = 1024
MAX_TITLE = 200
MAX_REASON = 2000
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_FRACTION = re.compile(r"(\.\d{1,6})\d*")
#: Go's zero time: Alertmanager's endsAt for an alert not known to end.
_ZERO_YEAR = 1


class IntakeError(ValueError):
    """The body cannot be accepted; the message names the field (answered with 400)."""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    #: The incident key: "alertmanager:<fingerprint>", "alertmanager-group:<hash>",
    #: "webhook:<name>:<key>". The same key while open is the same incident.
    key: str
    #: "alertmanager" or the webhook's name: bounded by the config (a metric label).
    source: str
    firing: bool
    title: str
    reason: str
    severity: Severity
    #: A policy named by the alert's label, None when it names none (or an unknown one).
    policy: str | None
    labels: Mapping[str, str]
    #: When the alerting condition began (wall time): identifies one firing episode, so
    #: a re-sent notification is recognised as the same and changes nothing.
    starts_at: float
    ends_at: float | None = None
    url: str = ""
    #: Why the mapping fell back (an unknown severity or policy): for the timeline.
    notes: tuple[str, ...] = field(default=())
    #: False when the sender gave no start time (`starts_at` stands in): a firing while
    #: the incident is open is then the same episode, a retry, not a new one.
    episode_known: bool = True


def alertmanager(payload: Any, cfg: IntakeConfig) -> list[AlertEvent]:
    body = _object(payload, "the body")
    version = body.get("version", "4")
    if version != "4":
        raise IntakeError(f'version: expected "4" (Alertmanager\'s webhook format), got '
                          f"{version!r}")
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise IntakeError("alerts: expected a non-empty list of alerts")
    if len(alerts) > cfg.max_alerts:
        raise IntakeError(f"alerts: {len(alerts)} alerts in one request, at most "
                          f"{cfg.max_alerts} are accepted; set max_alerts: {cfg.max_alerts} in "
                          "Alertmanager's webhook_configs (or raise [intake] max_alerts)")
    events = [_alert(a, f"alerts[{i}]", cfg) for i, a in enumerate(alerts)]
    if cfg.key_by == "group":
        return [_group(body, events, cfg)]
    return list({e.key: e for e in events}.values())


def webhook(payload: Any, hook: Webhook, cfg: IntakeConfig, now: float) -> list[AlertEvent]:
    """The generic body; `now` stands in for the start when the sender gives none."""
    body = _object(payload, "the body")
    known = {"status", "title", "key", "reason", "severity", "labels", "starts_at", "url"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise IntakeError(f"{unknown[0]}: unknown field; the body takes "
                          f"{', '.join(sorted(known))}")
    title = _string(body, "title", "the body", required=True)[:MAX_TITLE]
    status = _string(body, "status", "the body") or "firing"
    if status not in ("firing", "resolved"):
        raise IntakeError(f'status: must be "firing" or "resolved", got {status!r}')
    severity = _string(body, "severity", "the body") or str(hook.severity)
    if severity not in SEVERITY_WORDS:
        raise IntakeError(f"severity: must be one of {', '.join(SEVERITY_WORDS)}, got "
                          f"{severity!r}")
    starts = body.get("starts_at", now)
    if isinstance(starts, bool) or not isinstance(starts, int | float):
        raise IntakeError("starts_at: must be a Unix time in seconds")
    key = _string(body, "key", "the body") or title
    labels = _labels(body.get("labels", {}), "labels")
    return [AlertEvent(
        f"webhook:{hook.name}:{key[:MAX_LABEL_VALUE]}", hook.name, status == "firing", title,
        (_string(body, "reason", "the body") or title)[:MAX_REASON], Severity(severity),
        hook.policy,
        labels, float(starts), url=_string(body, "url", "the body"),
        episode_known="starts_at" in body)]


def _alert(raw: Any, where: str, cfg: IntakeConfig) -> AlertEvent:
    alert = _object(raw, where)
    status = alert.get("status")
    if status not in ("firing", "resolved"):
        raise IntakeError(f'{where}.status: must be "firing" or "resolved", got {status!r}')
    labels = _labels(alert.get("labels"), f"{where}.labels")
    if not labels:
        raise IntakeError(f"{where}.labels: an alert needs at least one label (alertname)")
    annotations = _labels(alert.get("annotations", {}), f"{where}.annotations",
                          limit=MAX_REASON)
    starts = _time(alert.get("startsAt"), f"{where}.startsAt")
    if starts is None:
        raise IntakeError(f"{where}.startsAt: required (when the alert began)")
    ends = _time(alert.get("endsAt"), f"{where}.endsAt")
    fingerprint = _string(alert, "fingerprint", where) or _fingerprint(labels)
    severity, policy, notes = _mapped(labels, cfg)
    name = labels.get("alertname", "alert")
    title = next((annotations[a] for a in cfg.title_annotations if annotations.get(a)), "") \
        or (f"{name} on {labels['instance']}" if "instance" in labels else name)
    reason = next((annotations[a] for a in cfg.reason_annotations if annotations.get(a)), "")
    return AlertEvent(f"alertmanager:{fingerprint[:128]}", "alertmanager", status == "firing",
                      title[:MAX_TITLE], (reason or title)[:MAX_REASON], severity, policy,
                      labels, starts, ends, _string(alert, "generatorURL", where), notes)


def _group(body: Mapping[str, Any], events: list[AlertEvent], cfg: IntakeConfig
           ) -> AlertEvent:
    """`key_by = "group"`: the whole notification is one incident (Alertmanager's group).

    Alertmanager says `status: resolved` only once every alert of the group has resolved.
    """
    status = body.get("status")
    if status not in ("firing", "resolved"):
        raise IntakeError(f'status: must be "firing" or "resolved", got {status!r}')
    group_key = _string(body, "groupKey", "the body") or ""
    common = _labels(body.get("commonLabels", {}), "commonLabels")
    annotations = _labels(body.get("commonAnnotations", {}), "commonAnnotations",
                          limit=MAX_REASON)
    firing = [e for e in events if e.firing] or events
    first = min(firing, key=lambda e: e.starts_at)
    severity, policy, notes = _mapped(common or first.labels, cfg)
    title = next((annotations[a] for a in cfg.title_annotations if annotations.get(a)),
                 first.title)
    if len(firing) > 1:
        title = f"{title} ({len(firing)} alerts)"
    digest = hashlib.sha256((group_key or repr(sorted(common.items()))).encode()).hexdigest()
    return AlertEvent(f"alertmanager-group:{digest[:32]}", "alertmanager", status == "firing",
                      title[:MAX_TITLE], "; ".join(e.reason for e in firing)[:MAX_REASON],
                      severity, policy, common or first.labels, first.starts_at,
                      url=first.url, notes=notes)


def _mapped(labels: Mapping[str, str], cfg: IntakeConfig
            ) -> tuple[Severity, str | None, tuple[str, ...]]:
    """Severity and policy from the labels, through the config's documented mapping."""
    notes: list[str] = []
    value = labels.get(cfg.severity_label)
    severity = cfg.severities.get(value.lower()) if value is not None else None
    if severity is None:
        severity = cfg.default_severity
        notes.append(f"label {cfg.severity_label}={value!r} is not in [intake.severities]: "
                     f"taken as {severity}" if value is not None else
                     f"no {cfg.severity_label} label: taken as {severity}")
    policy = labels.get(cfg.policy_label)
    if policy is not None and policy not in cfg.policies:
        notes.append(f"label {cfg.policy_label}={policy!r} names no configured policy: "
                     "routed by severity instead")
        policy = None
    return severity, policy, tuple(notes)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise IntakeError(f"{where}: expected a JSON object")
    return value


def _string(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise IntakeError(f"{key}: {'required, ' if required else ''}must be a "
                          f"{'non-empty ' if required else ''}string (in {where})")
    if len(value) > MAX_REASON:
        raise IntakeError(f"{key}: longer than {MAX_REASON} characters (in {where})")
    return value.strip()


def _labels(value: Any, where: str, limit: int = MAX_LABEL_VALUE) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise IntakeError(f"{where}: expected an object of names to strings")
    if len(value) > MAX_LABELS:
        raise IntakeError(f"{where}: {len(value)} entries, at most {MAX_LABELS}")
    for name, text in value.items():
        if not _LABEL_NAME.fullmatch(name):
            raise IntakeError(f"{where}: {name[:64]!r} is not a label name (letters, digits "
                              "and _, not starting with a digit)")
        if not isinstance(text, str) or len(text) > limit:
            raise IntakeError(f"{where}.{name}: must be a string of at most {limit} characters")
    return MappingProxyType(dict(sorted(value.items())))


def _time(value: Any, where: str) -> float | None:
    """RFC 3339 (Go prints nanoseconds; Python reads microseconds) -> Unix time; None for
    absent or Go's zero time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise IntakeError(f"{where}: expected an RFC 3339 time, got {type(value).__name__}")
    try:
        parsed = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        raise IntakeError(f"{where}: {value[:40]!r} is not an RFC 3339 time") from None
    if parsed.year <= _ZERO_YEAR:
        return None
    if parsed.tzinfo is None:
        raise IntakeError(f"{where}: {value[:40]!r} has no time zone offset")
    return parsed.timestamp()


def _fingerprint(labels: Mapping[str, str]) -> str:
    """For senders that give no fingerprint: a stable digest of the label set."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
