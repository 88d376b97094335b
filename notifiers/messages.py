"""What a person reads: the title and body of each notification. Pure.

Every page says what broke, since when, the reason, the incident id and,
for paging events, the one-click acknowledgement link made for that
recipient, so that the one SMS somebody reads at 3 a.m. is enough to act on.
Times are in the business's time zone.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from agent.incidents import Incident

#: Events that ask somebody to act, and so carry an acknowledgement link.
PAGING_EVENTS = frozenset({"page", "repeat", "ack_expired", "resolve_timeout"})

_TAG = {
    "page": "DOWN", "repeat": "STILL DOWN", "ack_expired": "ACK EXPIRED",
    "resolve_timeout": "UNRESOLVED", "update": "UPDATE", "resolved": "RESOLVED",
    "acknowledged": "ACKNOWLEDGED",
}


def clock(ts: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s" if m else f"{s}s"


def render(event: str, inc: Incident, *, target: str, link: str | None, reason: str,
           tz: ZoneInfo) -> tuple[str, str]:
    what = inc.check or inc.title
    title = f"[{_TAG.get(event, event.upper())}] {what} - incident #{inc.id}"
    where = f" ({target})" if target else ""
    if event == "resolved":
        end = inc.resolved_at or inc.opened_at
        lines = [f"{what}{where} is resolved after {span(end - inc.started_at)}.",
                 f"Down since: {clock(inc.started_at, tz)}; resolved {clock(end, tz)} "
                 f"by {inc.resolved_by}.",
                 f"Was: {inc.reason}"]
    elif event == "acknowledged":
        lines = [f"{what}{where}: acknowledged by {inc.acknowledged_by}"
                 f" at {clock(inc.acknowledged_at or inc.opened_at, tz)}.",
                 f"Reason: {inc.reason}"]
    else:
        lines = [f"{inc.title}{where}.",
                 f"Since: {clock(inc.started_at, tz)}",
                 f"Reason: {inc.reason}",
                 f"Severity: {inc.severity}. State: {inc.state.value}."]
        if reason:
            lines.append(f"Why you: {reason}")
    lines.append(f"Incident #{inc.id}. Details: onwatch show {inc.id}")
    if link:
        lines.append(f"Acknowledge: {link}")
    return title, "\n".join(lines)
