"""The post-incident report and the periodic review, in the console.

- GET /console/incidents/<id>/report: the report of one incident, the same
  document as `onwatch report ID --format html` (agent/report), printable.
- GET /console/review?since=30d: the review of a period, as `onwatch review`.

Both are built from the store at the moment of the request, with the same
context as the CLI (cli_report: the check's target, the status page's
components and public notices), so the console and the command line agree.
"""

from __future__ import annotations

from aiohttp import web
from markupsafe import escape

from agent import pages
from agent.console import context
from agent.console.context import CONSOLE_KEY, NO_INDEX, refuse
from agent.fields import parse_duration
from agent.report.document import Document, render_html
from agent.report.incident import incident_report
from agent.report.load import facts_of, report_context, scoped_review
from agent.report.review_doc import review_document

#: The longest period a review covers in the console (the store keeps about this much).
MAX_PERIOD_S = 400 * 86400.0


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/console/incidents/{id:\d{1,12}}/report", report_page)
    app.router.add_get("/console/review", review_page)


def _with_way_back(doc: Document, back: str, label: str) -> web.Response:
    # The document's template is shared with the CLI and the PDF: the console only adds
    # its way back, in front of the document's <main>.
    html = render_html(doc).replace(
        "<main>", f'<nav><a href="{escape(back)}">← {escape(label)}</a></nav>\n<main>', 1)
    return pages.respond(html, extra=NO_INDEX)


async def report_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    engine = console.engine
    inc = engine.store.incident(int(request.match_info["id"]))
    if inc is None:
        return refuse(request, "There is no such incident.", 404)
    now = engine.clock()
    doc = incident_report(facts_of(engine.store, inc, now),
                          report_context(engine.config, inc, engine.store), now=now)
    return _with_way_back(doc, f"/console/incidents/{inc.id}", f"Incident #{inc.id}")


async def review_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    engine, cfg = console.engine, console.engine.config
    since = request.query.get("since", "30d")
    back = parse_duration(since)
    if back is None or not 0 < back <= MAX_PERIOD_S:
        return refuse(request, 'The period must be a duration like "30d" or "7d".', 400)
    now = engine.clock()
    r, tz, title = scoped_review(cfg, engine.store, now - back, now, now, context.scope(request))
    return _with_way_back(review_document(r, tz, business=title, now=now), "/console",
                          "Console")
