"""What a person reads: the title and body of each notification. Pure.

Every message says what broke, since when, the reason and the incident id,
so that the one SMS somebody reads at 3 a.m. is enough to act on.
"""

from __future__ import annotations

import time

from agent.incidents import Incident


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s" if m else f"{s}s"


def opened(inc: Incident, target: str, public_url: str) -> tuple[str, str]:
    title = f"[DOWN] {inc.check or inc.title} - incident #{inc.id}"
    body = (
        f"{inc.title} ({target}).\n"
        f"Since: {_clock(inc.started_at)}\n"
        f"Reason: {inc.reason}\n"
        f"Severity: {inc.severity}\n"
        f"Incident #{inc.id}, opened {_clock(inc.opened_at)}. Details: onwatch show {inc.id}"
    )
    return title, body


def resolved(inc: Incident, target: str, public_url: str) -> tuple[str, str]:
    end = inc.resolved_at or inc.opened_at
    title = f"[RESOLVED] {inc.check or inc.title} - incident #{inc.id}"
    body = (
        f"{inc.check or inc.title} ({target}) is back up after {_span(end - inc.started_at)}.\n"
        f"Down since: {_clock(inc.started_at)}; resolved {_clock(end)} by {inc.resolved_by}.\n"
        f"Was: {inc.reason}\n"
        f"Incident #{inc.id}."
    )
    return title, body
