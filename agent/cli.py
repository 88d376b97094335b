"""`onwatch` command line: run, validate, check, incidents, show, ack, resolve, note, declare,
maintenance, test-notify, backup, update (a public status-page update; the grammar and
every help text: agent/cli_parser.py).

Exit codes: 0 success (a `check` that passed), 1 a check that failed or a
runtime problem, 2 a configuration or start-up problem (each named), 64 a
usage error (a mistyped command line).
Reads (`incidents`, `show`) open the store directly, read-only (WAL), so they
work whether or not the daemon runs. Changes (`ack`, `resolve`, `note`,
`declare`) go through the running daemon's API, because the daemon is the
store's one writer and must stop or start escalation at once; it finds the
daemon's address in `<state_dir>/agent.addr` and its token in the config or
`<state_dir>/api.token`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent import cli_migrate, cli_probe, cli_report, cli_token
from agent.cli_parser import DEFAULT_CONFIG, build_parser

if TYPE_CHECKING:
    pass

from agent.cli_common import (  # noqa: F401  (EXIT_USAGE: the documented exit codes)
    EXIT_CONFIG,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
)
from agent.cli_common import act as _act
from agent.cli_common import api as _api
from agent.cli_common import load as _load
from agent.cli_common import me as _me
from agent.cli_common import read_store as _store
from agent.cli_common import run_loop as _run_loop
from agent.cli_common import ts as _ts


def cmd_validate(args: argparse.Namespace) -> int:
    from agent import config_probe

    if config_probe.is_probe_file(Path(args.config)):
        return cli_probe.validate_probe_file(args.config)
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    print(cfg.summary())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from agent import daemon, logs

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    logs.configure(cfg.agent.log_level)
    try:
        reload_from = Path(args.reload_config) if args.reload_config else None
        _run_loop(daemon.serve(cfg, reload_from=reload_from))
    except daemon.StartError as exc:
        print(f"onwatch: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK




def cmd_check(args: argparse.Namespace) -> int:
    from checks.base import ProbeContext, run_with_deadline
    from checks.registry import KINDS

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    check = cfg.check(args.name)
    if check is None:
        names = ", ".join(c.name for c in cfg.checks) or "none"
        print(f"onwatch: no check named {args.name!r} in {args.config} (checks: {names})",
              file=sys.stderr)
        return EXIT_CONFIG

    async def once() -> None:
        ctx = ProbeContext()
        try:
            res = await run_with_deadline(KINDS[check.type].probe, check.spec, ctx, check.timeout)
        finally:
            await ctx.close()
        state = "OK" if res.ok else f"FAIL ({res.error_kind})"
        print(f"{check.name}: {state} in {res.latency_s * 1000:.1f} ms: {res.reason}")
        for key, value in sorted(res.observations.items()):
            print(f"  {key} = {value:g}")
        results.append(res.ok)

    results: list[bool] = []
    asyncio.run(once())
    return EXIT_OK if results and results[0] else EXIT_FAIL






def cmd_incidents(args: argparse.Namespace) -> int:
    store = _store(args)
    if isinstance(store, int):
        return store
    rows = store.incidents(open_only=args.open, limit=args.limit)
    if not rows:
        print("no open incidents" if args.open else "no incidents")
    for inc in rows:
        print(f"#{inc.id:<5} {inc.state.value:<12} {inc.severity:<8} {_ts(inc.opened_at)}  "
              f"{inc.title}: {inc.reason}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    if isinstance(store, int):
        return store
    inc = store.incident(args.id)
    if inc is None:
        print(f"onwatch: no incident #{args.id}", file=sys.stderr)
        return EXIT_FAIL
    print(f"Incident #{inc.id}: {inc.title} [{inc.state.value}, {inc.severity}]")
    print(f"  reason:  {inc.reason}")
    if inc.labels:
        print("  labels:  " + ", ".join(f"{k}={v}" for k, v in inc.labels.items()))
    print(f"  started: {_ts(inc.started_at)}   opened: {_ts(inc.opened_at)}   "
          f"resolved: {_ts(inc.resolved_at)}")
    for e in store.timeline(inc.id):
        print(f"  {_ts(e.at)}  {e.kind:<22} {e.actor:<10} {e.message}")
    return EXIT_OK








def cmd_ack(args: argparse.Namespace) -> int:
    return _act(args, f"/api/v1/incidents/{args.id}/ack", {"by": args.by or _me(), "via": "cli"},
                "incident #{id} acknowledged by {acknowledged_by}")


def cmd_resolve(args: argparse.Namespace) -> int:
    return _act(args, f"/api/v1/incidents/{args.id}/resolve",
                {"by": args.by or _me(), "cause": args.cause, "fix": args.fix},
                "incident #{id} resolved by {resolved_by}")


def cmd_note(args: argparse.Namespace) -> int:
    return _act(args, f"/api/v1/incidents/{args.id}/notes",
                {"by": args.by or _me(), "text": " ".join(args.text)},
                "note added to incident #{id}")


def cmd_declare(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"title": args.title, "severity": args.severity,
                               "by": args.by or _me(), "reason": args.reason}
    if args.policy:
        body["policy"] = args.policy
    return _act(args, "/api/v1/incidents", body,
                "declared incident #{id} ({severity}, policy {policy})")


def cmd_update(args: argparse.Namespace) -> int:
    """A public update: customer wording for the status page and its subscribers."""
    return _act(args, f"/api/v1/incidents/{args.id}/public",
                {"by": args.by or _me(), "text": args.public},
                "public update posted on incident #{incident}: {url}")


def cmd_test_notify(args: argparse.Namespace) -> int:
    """Send a test message through every channel of a contact; print each outcome."""
    from notifiers.channels import Message
    from notifiers.delivery import deliver

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    contact = cfg.contacts.get(args.contact)
    if contact is None:
        print(f"onwatch: no contact named {args.contact!r} (contacts: "
              f"{', '.join(cfg.contacts) or 'none'})", file=sys.stderr)
        return EXIT_CONFIG
    msg = Message("[TEST] onwatch", f"A test message from onwatch to {contact.name}: "
                  "this channel works.", f"onwatch test to {contact.name}: this channel works.")
    results = asyncio.run(deliver(contact.urls, msg, fallback=False,
                                  timeout=cfg.delivery.send_timeout))
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        extra = " (permanent: check the URL and its credentials)" if r.permanent else ""
        print(f"{mark} {r.channel}  {r.detail} in {r.elapsed_s:.2f}s{extra}")
    ok = all(r.ok for r in results)
    if contact.name in cfg.replies.contacts:  # and the way back: a button, an answer
        from agent import replies_probe

        ok = asyncio.run(replies_probe.run(cfg, contact.name, args.wait,
                                           lambda line: print(line, flush=True))) and ok
    elif not results:
        ok = False
    return EXIT_OK if ok else EXIT_FAIL


def cmd_maintenance(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    if args.action == "start":
        status, answer = _api(cfg, "POST", "/api/v1/maintenance", {
            "checks": args.check or [], "tags": args.tag or [], "for": args.duration,
            "reason": args.reason, "by": args.by or _me()})
        if status >= 400:
            print(f"onwatch: {answer.get('error', status)}", file=sys.stderr)
            return EXIT_FAIL
        until = answer.get("until")
        print(f"maintenance window #{answer['id']} until "
              f"{_ts(float(until) if isinstance(until, int | float) else None)}")
        return EXIT_OK
    if args.action == "end":
        status, answer = _api(cfg, "DELETE", f"/api/v1/maintenance/{args.id}")
        if status >= 400:
            print(f"onwatch: {answer.get('error', status)}", file=sys.stderr)
            return EXIT_FAIL
        print(f"maintenance window #{args.id} ended")
        return EXIT_OK
    status, answer = _api(cfg, "GET", "/api/v1/maintenance")
    windows = answer.get("windows", [])
    assert isinstance(windows, list)
    for w in windows:
        print(f"#{w['id']:<4} {_ts(w['start'])} -> {_ts(w['end'])}  checks: "
              f"{', '.join(w['checks']) or '-'}  tags: {', '.join(w['tags']) or '-'}  "
              f"{w['reason']}")
    for w in cfg.maintenance:
        print(f"{w.id:<6} (from the config) checks: {', '.join(sorted(w.checks)) or '-'}  "
              f"tags: {', '.join(sorted(w.tags)) or '-'}  {w.reason}")
    if not windows and not cfg.maintenance:
        print("no maintenance windows")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of the store through SQLite's online backup, agent running or not."""
    from agent.store.base import StoreError

    store = _store(args)
    if isinstance(store, int):
        return store
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / time.strftime("onwatch-%Y%m%d-%H%M%S.db")
    if dest.exists():
        print(f"onwatch: {dest} exists; name a new file or a directory", file=sys.stderr)
        return EXIT_FAIL
    try:
        store.backup(dest)
    except StoreError as exc:  # a store that cannot be copied to a file (PostgreSQL)
        print(f"onwatch: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (OSError, sqlite3.Error) as exc:
        print(f"onwatch: cannot write {dest}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        store.close()
    print(f"backed up {store.path} to {dest}")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "check": cmd_check,
            "incidents": cmd_incidents, "show": cmd_show, "ack": cmd_ack,
            "resolve": cmd_resolve, "note": cmd_note, "declare": cmd_declare,
            "maintenance": cmd_maintenance, "test-notify": cmd_test_notify, "backup": cmd_backup,
            "update": cmd_update, **cli_report.COMMANDS, **cli_token.COMMANDS,
            **cli_probe.COMMANDS, **cli_migrate.COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(COMMANDS).parse_args(argv)
    args.config = (args.config_opt or getattr(args, "config_pos", None)
                   or os.environ.get("ONWATCH_CONFIG") or DEFAULT_CONFIG)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except sqlite3.DatabaseError as exc:  # damage found past opening (a broken page)
        return _damaged(args, exc)
    except BrokenPipeError:  # `onwatch show 1 | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_FAIL
    return code


def _damaged(args: argparse.Namespace, exc: sqlite3.DatabaseError) -> int:
    from agent.store.sqlite import damaged, is_damage

    if not is_damage(exc):
        raise exc
    cfg = _load(args.config)
    path = cfg.agent.state_dir / "onwatch.db" if cfg else Path("onwatch.db")
    print(f"onwatch: {damaged(path, exc)}", file=sys.stderr)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
