"""`onwatch report | review | action`: documents from the store, and prevention actions.

`report ID` writes the post-incident report of one incident (Markdown by
default; `--format html` a printable page; `--format pdf` where WeasyPrint
is installed); `review --since 30d` the periodic review (Markdown, HTML or
JSON). Both read the store directly, read-only, so they work whether the
agent runs or not. `action add|done` change an incident's story and so go
through the running agent's API like `ack` and `note`; `action list` reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent import cli_common as common
from agent.fields import parse_duration
from agent.report.document import Document, render_html, render_markdown, render_pdf
from agent.report.incident import incident_report
from agent.report.load import facts_of, report_context, scoped_review
from agent.report.review_doc import review_document, review_json

AddParser = Callable[..., argparse.ArgumentParser]


def _emit(doc: Document, fmt: str, out: str | None) -> int:
    if fmt == "pdf":
        pdf = render_pdf(doc)
        if pdf is None:
            print("onwatch: PDF needs WeasyPrint (pip install weasyprint); use --format html "
                  "and print it from a browser", file=sys.stderr)
            return 1
        if not out:
            print("onwatch: --format pdf needs --out FILE", file=sys.stderr)
            return 2
        Path(out).write_bytes(pdf)
        return 0
    text = render_html(doc) if fmt == "html" else render_markdown(doc)
    if out:
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0




def cmd_report(args: argparse.Namespace) -> int:

    cfg, store = common.load(args.config), common.read_store(args)
    if cfg is None or isinstance(store, int):
        return store if isinstance(store, int) else common.EXIT_CONFIG
    inc = store.incident(args.id)
    if inc is None:
        print(f"onwatch: no incident #{args.id}", file=sys.stderr)
        return common.EXIT_FAIL
    now = time.time()
    doc = incident_report(facts_of(store, inc, now), report_context(cfg, inc, store), now=now)
    return _emit(doc, args.format, args.out)


def cmd_review(args: argparse.Namespace) -> int:
    import json

    cfg, store = common.load(args.config), common.read_store(args)
    if cfg is None or isinstance(store, int):
        return store if isinstance(store, int) else common.EXIT_CONFIG
    back = parse_duration(args.since)
    if back is None or back <= 0:
        print(f'onwatch: --since must be a duration like "30d", got {args.since!r}',
              file=sys.stderr)
        return common.EXIT_USAGE
    if args.tenant is not None and args.tenant not in cfg.tenants:
        print(f"onwatch: no tenant {args.tenant!r} in {cfg.source}; known: "
              f"{', '.join(sorted(cfg.tenants)) or '(none: add [[tenants]])'}", file=sys.stderr)
        return common.EXIT_USAGE
    now = time.time()
    r, tz, title = scoped_review(cfg, store, now - back, now, now, args.tenant)
    if args.format == "json":
        print(json.dumps({**review_json(r), "tenant": args.tenant or ""}, indent=2))
        return common.EXIT_OK
    return _emit(review_document(r, tz, business=title, now=now), args.format, args.out)


def cmd_action(args: argparse.Namespace) -> int:

    if args.verb == "list":
        store = common.read_store(args)
        if isinstance(store, int):
            return store
        rows = store.actions(incident_id=args.id, open_only=args.open)
        for a in rows:
            state = "open" if a.is_open else f"done by {a.done_by} {common.ts(a.done_at)}"
            print(f"#{a.id:<4} incident #{a.incident_id:<5} {a.owner:<12} {state:<30} {a.text}")
        if not rows:
            print("no prevention actions")
        return common.EXIT_OK
    if args.id is None:
        print(f"onwatch: action {args.verb} needs an id", file=sys.stderr)
        return common.EXIT_USAGE
    if args.verb == "add":
        if not args.text or not args.owner:
            print('onwatch: action add ID "what" --owner NAME', file=sys.stderr)
            return common.EXIT_USAGE
        return common.act(args, f"/api/v1/incidents/{args.id}/actions",
                        {"text": " ".join(args.text), "owner": args.owner,
                         "by": args.by or common.me()}, "prevention action #{id} added")
    return common.act(args, f"/api/v1/actions/{args.id}/done", {"by": args.by or common.me()},
                    "prevention action #{id} done")


COMMANDS = {"report": cmd_report, "review": cmd_review, "action": cmd_action}


def register(with_config: AddParser) -> None:
    """Add the report, review and action commands to the CLI's parser."""
    sp = with_config("report", "write the post-incident report of one incident")
    sp.add_argument("id", type=int, help="the incident")
    sp.add_argument("--format", choices=("md", "html", "pdf"), default="md",
                    help="Markdown (default), printable HTML, or PDF (needs WeasyPrint)")
    sp.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    sp = with_config("review", "review incidents and escalation over a period")
    sp.add_argument("--since", default="30d", help='how far back, e.g. "30d" (default), "7d"')
    sp.add_argument("--tenant", metavar="NAME",
                    help="one client's review: its checks, incidents, hours and time zone")
    sp.add_argument("--format", choices=("md", "html", "json", "pdf"), default="md",
                    help="Markdown (default), HTML, JSON for scripts, or PDF")
    sp.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    sp = with_config("action", "prevention actions: add, mark done, list")
    sp.add_argument("verb", choices=("add", "done", "list"),
                    help="add an action to an incident, mark one done, or list them")
    sp.add_argument("id", nargs="?", type=int,
                    help="add: the incident; done: the action; list: only this incident's")
    sp.add_argument("text", nargs="*", help="add: what will be done")
    sp.add_argument("--owner", help="add: who will do it")
    sp.add_argument("--open", action="store_true", help="list: only open actions")
    sp.add_argument("--by", help="who says so (default: your user name)")
