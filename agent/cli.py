"""`onwatch` command line: run, validate, check, incidents, show.

Exit codes: 0 success (a `check` that passed), 1 a check that failed or a
runtime problem, 2 a configuration or start-up problem (each named).
`incidents` and `show` read the store directly (read-only, WAL), so they work
whether or not the daemon is running.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent import config as configmod
from agent.config import Config, ConfigError

if TYPE_CHECKING:
    from agent.store.sqlite import Store

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _load(path: str) -> Config | None:
    try:
        return configmod.load(path)
    except ConfigError as exc:
        print(f"{exc.path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
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
        _run_loop(daemon.serve(cfg))
    except daemon.StartError as exc:
        print(f"onwatch: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _run_loop(coro: object) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


def cmd_check(args: argparse.Namespace) -> int:
    from checks import KINDS
    from checks.base import ProbeContext, run_with_deadline

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


def _store(cfg: Config) -> Store:
    from agent.store.sqlite import Store

    return Store.open(cfg.agent.state_dir, readonly=True)


def _ts(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def cmd_incidents(args: argparse.Namespace) -> int:
    from agent.store.sqlite import StoreError

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    try:
        store = _store(cfg)
    except StoreError as exc:
        print(f"onwatch: {exc}", file=sys.stderr)
        return EXIT_FAIL
    rows = store.incidents(open_only=args.open, limit=args.limit)
    if not rows:
        print("no open incidents" if args.open else "no incidents")
    for inc in rows:
        print(f"#{inc.id:<5} {inc.state.value:<12} {inc.severity:<8} {_ts(inc.opened_at)}  "
              f"{inc.title}: {inc.reason}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from agent.store.sqlite import StoreError

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    try:
        store = _store(cfg)
    except StoreError as exc:
        print(f"onwatch: {exc}", file=sys.stderr)
        return EXIT_FAIL
    inc = store.incident(args.id)
    if inc is None:
        print(f"onwatch: no incident #{args.id}", file=sys.stderr)
        return EXIT_FAIL
    print(f"Incident #{inc.id}: {inc.title} [{inc.state.value}, {inc.severity}]")
    print(f"  reason:  {inc.reason}")
    print(f"  started: {_ts(inc.started_at)}   opened: {_ts(inc.opened_at)}   "
          f"resolved: {_ts(inc.resolved_at)}")
    for e in store.timeline(inc.id):
        print(f"  {_ts(e.at)}  {e.kind:<22} {e.actor:<10} {e.message}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onwatch", description="Monitoring agent with escalation.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("config_pos", nargs="?", metavar="CONFIG")
        sp.add_argument("--config", "-c", dest="config_opt", metavar="PATH")
        return sp

    with_config("run", "run the agent").set_defaults(func=cmd_run)
    with_config("validate", "check a config file and report every problem").set_defaults(
        func=cmd_validate)
    sp = with_config("check", "run one check once and print its result")
    sp.add_argument("name")
    sp.set_defaults(func=cmd_check)
    sp = with_config("incidents", "list incidents from the store")
    sp.add_argument("--open", action="store_true", help="only open ones")
    sp.add_argument("--limit", type=int, default=50)
    sp.set_defaults(func=cmd_incidents)
    sp = with_config("show", "show one incident and its timeline")
    sp.add_argument("id", type=int)
    sp.set_defaults(func=cmd_show)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config = args.config_opt or args.config_pos
    if args.config is None:
        print("onwatch: give the config file (onwatch "
              f"{args.command} CONFIG or --config PATH)", file=sys.stderr)
        return EXIT_CONFIG
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
