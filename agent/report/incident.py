"""The post-incident report of one incident, as a `Document`. Pure: `now` is an argument.

Written to be sent as it is: a summary a manager can read in ten seconds,
the customer impact, the times to detect, acknowledge and resolve, the
escalation path page by page (who, when, which tier, over which channel,
delivered or not, answered or not), the timeline, the cause and fix a person
gave, the prevention actions with their owners, and what to learn — drawn
from the figures, not boilerplate.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from agent.report.document import Document, Section, span, when
from agent.report.facts import IncidentFacts, PageSent
from agent.vocab import Entry

#: Timeline entries that are bookkeeping: the escalation path already shows them.
_QUIET = frozenset({Entry.NOTIFICATION_QUEUED, Entry.NOTIFICATION_DELIVERED,
                    Entry.NOTIFICATION_RETRY, Entry.NOTIFICATION_HELD})


@dataclass(frozen=True, slots=True)
class Context:
    tz: ZoneInfo
    business: str = ""
    #: What the check watches, in words a reader understands ("" for a declared incident).
    target: str = ""
    #: The policy's acknowledgement timeout (for "what to learn"), if it has one.
    ack_timeout: float | None = None
    #: Customer-facing components the incident affected, and public notices sent.
    components: tuple[str, ...] = ()
    public_notices: tuple[tuple[float, str], ...] = ()


def incident_report(f: IncidentFacts, ctx: Context, *, now: float) -> Document:
    inc = f.incident
    doc = Document(f"Incident #{inc.id}: {inc.title}",
                   "Post-incident report" + (f" for {ctx.business}" if ctx.business else "")
                   + f", written {when(now, ctx.tz)}")
    doc.sections += [_summary(f, ctx), _impact(f, ctx), _path(f, ctx), _timeline(f, ctx),
                     _cause(f), _actions(f, ctx), _learn(f, ctx)]
    return doc


def _summary(f: IncidentFacts, ctx: Context) -> Section:
    inc = f.incident
    ack = (f"{when(f.acknowledged_at, ctx.tz)} by {f.acknowledged_by} via {f.acknowledged_via} "
           f"(after {span(f.time_to_acknowledge)})" if f.acknowledged_at is not None
           else "never")
    res = (f"{when(inc.resolved_at, ctx.tz)} by {inc.resolved_by} "
           f"(after {span(f.time_to_resolve)})" if inc.resolved_at is not None
           else f"still {inc.state.value}")
    sec = Section("Summary", paragraphs=[_story(f, ctx)])
    sec.facts = [("What", inc.check or "declared by hand") if not ctx.target else
                 ("What", f"{inc.check} ({ctx.target})"),
                 ("Kind", str(inc.kind)), ("Severity", str(inc.severity)),
                 ("Began", when(inc.started_at, ctx.tz)),
                 ("Detected", f"{when(inc.opened_at, ctx.tz)} (after {span(f.time_to_detect)})"),
                 ("Acknowledged", ack), ("Resolved", res),
                 ("Highest tier paged", str(f.tier_reached) if f.tier_reached else "none")]
    return sec


def _story(f: IncidentFacts, ctx: Context) -> str:
    inc, first = f.incident, next((p for p in f.pages if p.paging), None)
    what = inc.check or "a problem declared by hand"
    parts = [f"On {when(inc.started_at, ctx.tz)}, {what} began failing: {inc.reason}."]
    if first is not None:
        parts.append(f"onwatch paged {first.contact} {span(first.at - inc.started_at)} after "
                     "the first failure.")
    if f.acknowledged_by:
        parts.append(f"{f.acknowledged_by} acknowledged it {span(f.time_to_acknowledge)} after "
                     "it opened.")
    if inc.resolved_at is not None:
        parts.append(f"It was resolved {span(f.time_to_resolve)} after it opened, by "
                     f"{inc.resolved_by}; customers were affected for {span(f.impact)}.")
    return " ".join(parts)


def _impact(f: IncidentFacts, ctx: Context) -> Section:
    sec = Section("Customer impact")
    sec.facts = [("Affected", ", ".join(ctx.components) or "no customer-facing component mapped"),
                 ("Duration", span(f.impact)),
                 ("Public notices", str(len(ctx.public_notices)) if ctx.public_notices
                  else "none")]
    sec.items = [(None, f"{when(at, ctx.tz)}: {text}") for at, text in ctx.public_notices]
    return sec


def _channels(p: PageSent) -> str:
    return "; ".join(f"{c.channel}: {c.detail}" for c in p.channels) or "-"


def _path(f: IncidentFacts, ctx: Context) -> Section:
    sec = Section("Escalation path", header=("When", "Who", "Tier", "Message", "Channels",
                                              "Delivered", "Answered"))
    for p in f.pages:
        delivered = (when(p.delivered_at, ctx.tz) if p.delivered_at is not None
                     else p.status)
        sec.rows.append((when(p.at, ctx.tz), p.contact, str(p.tier) if p.tier else "-",
                         str(p.event), _channels(p), delivered,
                         ("yes" if p.answered else "no") if p.paging else "-"))
    if not f.pages:
        sec.paragraphs.append("Nobody was paged.")
    return sec


def _timeline(f: IncidentFacts, ctx: Context) -> Section:
    sec = Section("Timeline", header=("Time", "Event", "By", "Details"))
    sec.rows = [(when(e.at, ctx.tz), str(e.kind).replace("_", " "), e.actor, e.message)
                for e in f.timeline if e.kind not in _QUIET]
    return sec


def _cause(f: IncidentFacts) -> Section:
    return Section("Cause and fix", facts=[("Cause", f.cause or "not recorded"),
                                           ("Fix", f.fix or "not recorded")])


def _actions(f: IncidentFacts, ctx: Context) -> Section:
    sec = Section("Prevention actions")
    sec.items = [(not a.is_open, f"#{a.id} {a.text} (owner: {a.owner}; "
                  + (f"done {when(a.done_at, ctx.tz)} by {a.done_by})" if not a.is_open
                     else "open)")) for a in f.actions]
    if not f.actions:
        sec.paragraphs.append("None recorded yet: add them with "
                              f"`onwatch action add {f.incident.id} \"...\" --owner NAME`.")
    return sec


def _learn(f: IncidentFacts, ctx: Context) -> Section:
    items: list[tuple[bool | None, str]] = []
    tta = f.time_to_acknowledge
    if f.pages and tta is None and f.incident.resolved_at is not None:
        items.append((None, "Nobody acknowledged the pages: check that the people paged "
                            "can be reached and know how to acknowledge."))
    if tta is not None and ctx.ack_timeout and tta > ctx.ack_timeout:
        items.append((None, f"Acknowledging took {span(tta)}, longer than the policy's "
                            f"acknowledgement timeout ({span(ctx.ack_timeout)})."))
    if f.tier_reached > 1:
        items.append((None, f"Escalation reached tier {f.tier_reached}: the first person "
                            "paged did not acknowledge in time."))
    failed = [p for p in f.pages if p.status == "failed"]
    if failed:
        items.append((None, f"{len(failed)} message(s) could not be delivered "
                            f"({', '.join(sorted({p.contact for p in failed}))}): check "
                            "those channels."))
    if f.incident.resolved_at is not None and not f.cause:
        items.append((None, "No cause was recorded: resolve with --cause and --fix so the "
                            "next reader knows what happened."))
    if not f.actions and f.resolved_by_person:
        items.append((None, "No prevention action was agreed."))
    if not items:
        items.append((None, "Detection, paging and response worked as the policy intends."))
    return Section("What to learn", items=items)
