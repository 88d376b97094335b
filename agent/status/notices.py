"""Public notices: what customers are told when a component breaks, changes, or is fixed.

The one rule: only customer wording leaves here. A notice is built from the
component names of the config and fixed sentences (or a person's own words,
`onwatch update ID --public "..."`); never from an incident's title, reason,
check name, target, contact or policy, so none of those can reach the page,
the feed, the JSON or a subscriber's inbox.

`Publisher.on_incident` is the engine's hook: it runs inside the engine's
transaction for an incident change, so the notice and every subscriber's
copy of it (status_mail rows) are stored together with the change, or not
at all. Opening a customer-facing incident publishes the default notice,
unless one of its components says `notice = "manual"` (wait for a person);
resolving it publishes the closing notice, if customers were told anything.
Maintenance windows are announced `announce_ahead` before they start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable, Sequence

import structlog

from agent.calendar import in_business_hours, next_opening
from agent.config import Config
from agent.config_status import Component
from agent.detect.maintenance import MaintenanceWindow
from agent.incidents import Incident, TimelineEntry
from agent.status import subscriptions
from agent.store.status import StatusStore
from agent.vocab import Change, Entry, IncidentKind, NoticeKind
from agent.webguard import unstorable

log = structlog.get_logger(__name__)

#: Incident kinds customers can notice (a certificate close to expiry is not one, yet).
PUBLIC_KINDS = frozenset({IncidentKind.OUTAGE, IncidentKind.FLAPPING, IncidentKind.DEGRADED})
UPDATE_MAX = 2000
#: How far ahead the end of a weekly window is searched for, in minutes (bounded).
WEEKLY_SEARCH = 7 * 24 * 60


class NoticeError(Exception):
    """A public update that cannot be posted; the message says why."""


def names(components: Iterable[Component]) -> str:
    """"A", "A and B", "A, B and C"."""
    items = [c.name for c in components]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def occurrence(w: MaintenanceWindow, now: float) -> tuple[float, float | None] | None:
    """The window's current or next (start, end); None when it has none ahead."""
    if w.weekly is None:
        if w.start is None or (w.end is not None and w.end <= now):
            return None
        return w.start, w.end
    start = now if in_business_hours(w.weekly, now) else next_opening(w.weekly, now)
    if start is None:
        return None
    t = start - start % 60
    for _ in range(WEEKLY_SEARCH):  # the first minute it is closed again
        t += 60
        if not in_business_hours(w.weekly, t):
            return start, t
    return start, None


def opening_text(kind: str, components: Sequence[Component]) -> str:
    if kind == IncidentKind.DEGRADED:
        return (f"{names(components)} may be slower than usual. We are looking into it and "
                "will post an update here.")
    return (f"We are investigating a problem with {names(components)}. We will post an "
            "update here as soon as we know more.")


def closing_text(components: Sequence[Component]) -> str:
    return (f"The problem with {names(components)} has been fixed and everything is working "
            "normally again. Thank you for your patience.")


def local(ts: float, tz: dt.tzinfo, fmt: str = "%a %-d %b %Y, %H:%M %Z") -> str:
    return dt.datetime.fromtimestamp(ts, tz).strftime(fmt)


def maintenance_text(components: Sequence[Component], start: float, end: float | None,
                     tz: dt.tzinfo) -> str:
    until = f" to {local(end, tz)}" if end is not None else ""
    return (f"Scheduled maintenance: {names(components)} may be unavailable from "
            f"{local(start, tz)}{until}.")


class Publisher:
    def __init__(self, config: Config, store: StatusStore, link_key: bytes,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.status = config.status
        self.store = store
        self.link_key = link_key
        self.clock = clock
        #: The base URL customers use (set by the daemon once the public listener is bound).
        self.public_url = ""
        #: Set whenever mail is queued: the mailer sends it.
        self.mail_wakeup = asyncio.Event()
        #: Bumped on every notice: the page cache drops what it rendered before.
        self.generation = 0

    def components_of(self, inc: Incident) -> tuple[Component, ...]:
        if inc.check is None or inc.kind not in PUBLIC_KINDS:
            return ()
        return self.status.by_check.get(inc.check, ())

    # -- the engine's hook (inside its transaction) -------------------------------

    def on_incident(self, inc: Incident, event: Change | None, now: float) -> None:
        comps = self.components_of(inc)
        if not comps or event not in (Change.OPENED, Change.RESOLVED):
            return
        if event == Change.OPENED:
            if any(c.notice == "manual" for c in comps):
                log.info("public_notice_waiting", incident=inc.id)
                return
            self._publish(inc.id, NoticeKind.OPENING, opening_text(inc.kind, comps), comps, now)
        elif self._told(inc.id):
            self._publish(inc.id, NoticeKind.CLOSING, closing_text(comps), comps, now)

    def _told(self, incident_id: int) -> bool:
        """Were customers told about this incident, and not yet told it is over?"""
        got = self.store.notices(incident_id=incident_id, limit=1)
        return bool(got) and got[0].kind != NoticeKind.CLOSING

    # -- people ---------------------------------------------------------------------

    def post_update(self, incident_id: int, text: str, by: str, via: str = "api") -> int:
        """A person's public words on an incident; in the timeline too (who posted what)."""
        text = text.strip()
        if not text:
            raise NoticeError("the public update is empty")
        if len(text) > UPDATE_MAX:
            raise NoticeError(f"a public update is at most {UPDATE_MAX} characters")
        if unstorable(text):  # a NUL or a lone surrogate: PostgreSQL refuses it
            raise NoticeError("a public update must not contain NUL characters or invalid "
                              "Unicode")
        inc = self.store.store.incident(incident_id)
        if inc is None:
            raise NoticeError(f"no incident #{incident_id}")
        comps = self.components_of(inc)
        if not comps:
            raise NoticeError(f"incident #{incident_id} affects no component of the status "
                              "page ([[status.components]]), so there is nothing to tell "
                              "customers")
        now = self.clock()
        with self.store.store.tx():
            nid = self._publish(incident_id, NoticeKind.UPDATE, text, comps, now, by=by)
            self.store.store.append(incident_id, [TimelineEntry(
                now, Entry.PUBLIC_UPDATE, by, f"public update posted by {by}: {text}",
                {"notice": nid, "via": via})])
        return nid

    # -- maintenance announcements (the status loop calls this) ----------------------

    def announce(self, windows: Iterable[MaintenanceWindow], now: float) -> int:
        count = 0
        for w in windows:
            when = occurrence(w, now)
            if when is None or not now < when[0] <= now + self.status.announce_ahead:
                continue
            start, end = when
            comps = tuple(c for c in self.status.components
                          if any(w.covers(ch, self._tags(ch)) for ch in c.checks))
            wid = f"{w.id}@{int(start)}"
            if not comps or self.store.announced(wid):
                continue
            with self.store.store.tx():
                self._publish(None, NoticeKind.MAINTENANCE,
                              maintenance_text(comps, start, end, self.config.agent.tz),
                              comps, now, window_id=wid)
            count += 1
        return count

    def _tags(self, check: str) -> tuple[str, ...]:
        found = self.config.check(check)
        return found.tags if found else ()

    # -- storing and mailing ----------------------------------------------------------

    def _publish(self, incident_id: int | None, kind: NoticeKind, text: str,
                 comps: Sequence[Component], now: float, *, by: str = "",
                 window_id: str | None = None) -> int:
        nid = self.store.add_notice(kind=kind, at=now, text=text,
                                    components=[c.slug for c in comps],
                                    incident_id=incident_id, window_id=window_id, by=by)
        queued = self._mail(kind, text, comps, now)
        self.generation += 1
        log.info("public_notice", notice=nid, kind=kind, incident=incident_id,
                 subscribers=queued)
        return nid

    def _mail(self, kind: NoticeKind, text: str, comps: Sequence[Component], now: float) -> int:
        if self.status.email is None:
            return 0
        heading = {"opening": "Investigating", "update": "Update", "closing": "Resolved",
                   "maintenance": "Scheduled maintenance"}[kind]
        subject = f"[{self.status.title}] {heading}: {names(comps)}"
        subs = self.store.confirmed()
        for sub in subs:
            unsub = subscriptions.unsubscribe_url(self.public_url, self.link_key, sub, now)
            body = (f"{self.status.title}: {heading.lower()}\n\n{text}\n\n"
                    f"Affected: {names(comps)}\n"
                    f"Posted: {local(now, self.config.agent.tz)}\n\n"
                    f"Current status: {self.public_url}/\n"
                    f"Unsubscribe (one click): {unsub}\n")
            self.store.enqueue_mail(sid=sub.id, kind="notice", subject=subject, body=body,
                                    unsubscribe=unsub, now=now)
        if subs:
            self.mail_wakeup.set()
        return len(subs)
