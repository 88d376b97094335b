"""The periodic review as a `Document` (Markdown, HTML) and as plain data (JSON). Pure."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo

from agent.report.document import Document, Section, span, when
from agent.report.review import Review


def _pct(x: float) -> str:
    return f"{x * 100:.3f}%"


def review_document(r: Review, tz: ZoneInfo, *, business: str = "", now: float) -> Document:
    doc = Document("Incident review" + (f": {business}" if business else ""),
                   f"{when(r.since, tz)} to {when(r.until, tz)}; written {when(now, tz)}")
    doc.sections.append(Section("Suggestions", items=[(None, s) for s in r.suggestions]
                                or [(None, "Nothing stands out: keep going.")]))
    checks = Section("Checks", header=("Check", "Incidents", "Uptime", "Downtime",
                                       "Mean to ack", "Worst to ack", "Mean to resolve",
                                       "Worst to resolve", "Short, self-resolved", "Flapping"))
    checks.rows = [(c.check, str(c.incidents), _pct(c.uptime), span(c.downtime_s),
                    span(c.mean_tta), span(c.worst_tta), span(c.mean_ttr), span(c.worst_ttr),
                    str(c.short_self_resolved), str(c.flapping)) for c in r.checks]
    doc.sections.append(checks)
    esc = Section("Escalation", facts=[("Incidents", str(r.incidents)),
                                       ("Escalated past the first person", str(r.past_first)),
                                       ("Pages never acknowledged", str(r.unanswered_pages))])
    esc.facts += [(f"Highest tier {t}" if t else "Nobody paged", f"{n} incident(s)")
                  for t, n in r.tiers.items()]
    doc.sections.append(esc)
    people = Section("Pages per person", header=("Person", "Pages", "At night (22-07)",
                                                 "Outside business hours"))
    people.rows = [(p.contact, str(p.pages), str(p.at_night), str(p.outside_hours))
                   for p in r.people]
    doc.sections.append(people)
    actions = Section("Open prevention actions")
    actions.items = [(False, f"#{a.id} (incident #{a.incident_id}) {a.text}: {a.owner}, "
                             f"open since {when(a.created_at, tz)}") for a in r.open_actions]
    if not r.open_actions:
        actions.paragraphs.append("None.")
    doc.sections.append(actions)
    return doc


def review_json(r: Review) -> dict[str, Any]:
    """A stable, documented shape for scripts (`onwatch review --format json`)."""
    return {"since": r.since, "until": r.until, "incidents": r.incidents,
            "checks": [asdict(c) for c in r.checks],
            "tiers": {str(k): v for k, v in r.tiers.items()},
            "escalated_past_first": r.past_first, "people": [asdict(p) for p in r.people],
            "unanswered_pages": r.unanswered_pages,
            "unanswered_incidents": r.unanswered_incidents,
            "open_actions": [asdict(a) for a in r.open_actions],
            "suggestions": r.suggestions}
