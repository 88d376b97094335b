"""What a person reads: each event in a rich form and a one-line SMS form. Pure.

Every page says what broke, since when, the reason, the incident id and, for
paging events, the one-click acknowledgement link made for that recipient,
so that the one SMS somebody reads at 3 a.m. is enough to act on. Times are
in the business's time zone.

A business may override any form in `[templates]`: keys `<event>` (the rich
body), `<event>_title` and `<event>_sms`, with `{placeholders}` from FIELDS.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from agent.incidents import Incident
from agent.vocab import PAGING_EVENTS, Event, IncidentKind
from notifiers.channels import Message

__all__ = ["EVENTS", "FIELDS", "PAGING_EVENTS", "SMS_LIMIT", "render", "template_problem"]

EVENTS = tuple(e.value for e in Event)
FIELDS = ("tag", "what", "incident", "title", "severity", "state", "reason", "since",
          "since_time", "target", "link", "why", "duration", "by", "message_id")
SMS_LIMIT = 160
#: An alert's labels in a message body: enough to say where, not a wall of text.
LABELS_LIMIT = 500

_TAG = {
    Event.PAGE: "DOWN", Event.REPEAT: "STILL DOWN", Event.ACK_EXPIRED: "ACK EXPIRED",
    Event.RESOLVE_TIMEOUT: "UNRESOLVED", Event.UPDATE: "UPDATE", Event.RESOLVED: "RESOLVED",
    Event.ACKNOWLEDGED: "ACKNOWLEDGED", Event.TEST: "TEST",
}
#: A page about something other than a plain outage says what it is in its tag.
_KIND_TAG = {
    IncidentKind.FLAPPING: "FLAPPING", IncidentKind.DEGRADED: "DEGRADED",
    IncidentKind.CHANGED: "CHANGED", IncidentKind.EXPIRING: "EXPIRING",
    IncidentKind.FILLING: "DISK", IncidentKind.ALERT: "ALERT",
}


def template_problem(key: str, text: str) -> str | None:
    """Why `[templates] key = text` cannot be used, or None."""
    event, _, form = key.partition("_")
    if key.startswith("ack_expired") or key.startswith("resolve_timeout"):
        event = "_".join(key.split("_")[:2])
        form = key[len(event) + 1:]
    if event not in EVENTS or form not in ("", "title", "sms"):
        return (f"unknown template; keys are <event>, <event>_title or <event>_sms with "
                f"event one of {', '.join(EVENTS)}")
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        return f"is not a valid template ({exc})"
    unknown = sorted(n for n in names if n not in FIELDS)
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; known: {', '.join(FIELDS)}"
    return None


def clock(ts: float, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    return dt.datetime.fromtimestamp(ts, tz).strftime(fmt)


def span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s" if m else f"{s}s"


def render(event: Event, inc: Incident, *, target: str, link: str | None, reason: str,
           tz: ZoneInfo, message_id: str = "", now: float | None = None,
           overrides: Mapping[str, str] | None = None) -> Message:
    end = inc.resolved_at or now or inc.opened_at
    tag = _TAG.get(event, event.upper())
    if event in (Event.PAGE, Event.REPEAT):
        tag = _KIND_TAG.get(inc.kind, tag)
    f = {
        "tag": tag, "what": inc.check or inc.title,
        "incident": str(inc.id), "title": inc.title, "severity": inc.severity,
        "state": inc.state.value, "reason": inc.reason, "since": clock(inc.started_at, tz),
        "since_time": clock(inc.started_at, tz, "%H:%M"), "target": target, "link": link or "",
        "why": reason, "duration": span(end - inc.started_at),
        "by": inc.resolved_by or inc.acknowledged_by or "", "message_id": message_id,
        # An alert's labels (Alertmanager's): where it is, which team, the runbook's key.
        "labels": ", ".join(f"{k}={v}" for k, v in inc.labels.items())[:LABELS_LIMIT],
    }
    o = overrides or {}
    title = o.get(f"{event}_title", "[{tag}] {what} - incident #{incident}").format(**f)
    body = o[event].format(**f) if event in o else _body(event, f, inc, tz)
    short = o[f"{event}_sms"].format(**f) if f"{event}_sms" in o else _short(event, f)
    return Message(title, body, short)


def _body(event: Event, f: dict[str, str], inc: Incident, tz: ZoneInfo) -> str:
    where = f" ({f['target']})" if f["target"] else ""
    if event == Event.RESOLVED:
        lines = [f"{f['what']}{where} is resolved after {f['duration']}.",
                 f"Down since: {f['since']}; resolved by {f['by']}.", f"Was: {f['reason']}"]
    elif event == Event.ACKNOWLEDGED:
        at = clock(inc.acknowledged_at or inc.opened_at, tz)
        lines = [f"{f['what']}{where}: acknowledged by {f['by']} at {at}.",
                 f"Reason: {f['reason']}"]
    elif event == Event.TEST:
        lines = ["A test message from onwatch: this channel works."]
    else:
        lines = [f"{f['title']}{where}.", f"Since: {f['since']} ({f['duration']} ago)",
                 f"Reason: {f['reason']}", f"Severity: {f['severity']}. State: {f['state']}."]
        if f["labels"]:
            lines.append(f"Labels: {f['labels']}")
        if f["why"]:
            lines.append(f"Why you: {f['why']}")
    lines.append(f"Incident #{f['incident']}. Details: onwatch show {f['incident']}")
    if f["link"]:
        lines.append(f"Acknowledge: {f['link']}")
    if f["message_id"]:
        lines.append(f"Message id: {f['message_id']}")
    return "\n".join(lines)


def _short(event: Event, f: dict[str, str]) -> str:
    """One line: the essentials, the reason cut to keep the whole under SMS_LIMIT if it can."""
    if event == Event.TEST:
        return "onwatch test message: this channel works."
    head = f"{f['tag']} {f['what']} #{f['incident']}"
    tail = f" Ack: {f['link']}" if f["link"] else ""
    if event == Event.RESOLVED:
        middle = f" after {f['duration']}."
    elif event == Event.ACKNOWLEDGED:
        middle = f" by {f['by']}."
    else:
        middle = f" since {f['since_time']}: {f['reason']}"
    room = SMS_LIMIT - len(head) - len(tail)
    if len(middle) > room > 4:
        middle = middle[:room - 3].rstrip() + "..."
    return head + middle + tail
