"""`onwatch probe`: run a remote probe, or manage the central's probes.

- `onwatch probe --config probe.toml`: run as a probe (agent/probe_agent.py);
- `onwatch probe add NAME --config central.toml`: issue a key for probe NAME (a
  new one also replaces an earlier key: the old one stops working) and print
  it once, with the probe.toml to start from;
- `onwatch probe list`, `onwatch probe revoke NAME`: on the central.

The add/list/revoke commands write the store directly (probes are not
incidents), whether or not the agent runs; the agent reads the probe table
at every request, so a revoked key is refused at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent import cli_common as common

if TYPE_CHECKING:
    from agent.config import Config
    from agent.config_probe import ProbeFile

AddParser = Callable[..., argparse.ArgumentParser]


def cmd_probe(args: argparse.Namespace) -> int:

    if args.verb is None:
        return _run(args)
    if args.verb in ("add", "revoke") and not args.name:
        print(f"onwatch: probe {args.verb} needs the probe's name", file=sys.stderr)
        return 64
    from agent import config_guard, links, probe_wire
    from agent.store.base import StoreError, open_store
    from agent.store.probes import ProbeStore

    cfg = common.load(args.config)
    if cfg is None:
        return common.EXIT_CONFIG
    if args.name and not config_guard.is_name(args.name):
        print(f"onwatch: {args.name!r} is not a probe name (letters, digits, '-', '_', '.')",
              file=sys.stderr)
        return 64
    try:
        store = open_store(cfg)
    except StoreError as exc:
        print(f"onwatch: {exc}", file=sys.stderr)
        return common.EXIT_FAIL
    try:
        probes, now = ProbeStore(store), time.time()
        if args.verb == "add":
            key_id = probes.add(args.name, now)
            # The agent's own link key: on a shared store, the one every instance signs
            # with (agent/daemon.py), so any instance honours the probe.
            secret = store.shared_secret("link.key",
                                         links.load_or_create_key(cfg.agent.state_dir))
            key = probe_wire.format_key(key_id, probe_wire.derive_key(secret, args.name, key_id))
            used = sorted(c.name for c in cfg.checks if args.name in c.locations)
            print(f"probe {args.name}: key #{key_id} (shown once; keep it secret). "
                  f"Checks at this location: {', '.join(used) or 'none yet'}.")
            print(f"\n[probe]\nname = \"{args.name}\"\n{_central_line(cfg)}\n"
                  f"key = \"{key}\"\nstate_dir = \"/var/lib/onwatch-probe\"")
            return common.EXIT_OK
        if args.verb == "revoke":
            if not probes.revoke(args.name, now):
                print(f"onwatch: no active probe {args.name!r}", file=sys.stderr)
                return common.EXIT_FAIL
            print(f"probe {args.name} revoked: its requests are refused from now on")
            return common.EXIT_OK
        rows = probes.all()
        for p in rows:
            state = "revoked " + common.ts(p.revoked_at) if p.revoked_at else "active"
            print(f"{p.name:<16} key #{p.key_id:<3} added {common.ts(p.added_at)}  last report "
                  f"{common.ts(p.last_seen)}  {state}")
        if not rows:
            print("no probes (add one: onwatch probe add NAME)")
        return common.EXIT_OK
    finally:
        store.close()


def _central_line(cfg: Config) -> str:
    """probe.toml's `central`: [agent] public_url, else where this agent listens (said so)."""
    if cfg.agent.public_url:
        return f'central = "{cfg.agent.public_url}"'
    host, port = cfg.web.public_listen or (cfg.agent.listen_host, cfg.agent.listen_port)
    host = f"[{host}]" if ":" in host else host
    return ("# [agent] public_url is not set: this is where the agent listens; give the\n"
            "# address the probe reaches it at (https:// behind TLS)\n"
            f'central = "http://{host}:{port}"')


def load_probe_file(path: str) -> ProbeFile | None:
    """probe.toml parsed and its key checked, or None after printing every problem."""
    from pathlib import Path

    from agent import probe_wire
    from agent.config_probe import ProbeFileError, parse_probe_file

    try:
        cfg = parse_probe_file(Path(path))
        probe_wire.parse_key(cfg.key)
    except ProbeFileError as exc:
        print(f"onwatch: {exc}", file=sys.stderr)
        return None
    except probe_wire.WireError as exc:
        print(f"onwatch: {path}: probe: key: {exc}", file=sys.stderr)
        return None
    return cfg


def validate_probe_file(path: str) -> int:
    """`onwatch validate probe.toml`: the probe's file, checked as `onwatch probe` reads it."""
    cfg = load_probe_file(path)
    if cfg is None:
        return common.EXIT_CONFIG
    print(f"{path}: ok, probe {cfg.name} reporting to {', '.join(cfg.centrals)}, "
          f"state in {cfg.state_dir}")
    return common.EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from agent import logs, probe_agent

    cfg = load_probe_file(args.config)
    if cfg is None:
        return common.EXIT_CONFIG
    logs.configure(cfg.log_level)
    try:
        common.run_loop(probe_agent.run(cfg))
    except OSError as exc:
        print(f"onwatch: cannot run the probe: {exc}", file=sys.stderr)
        return common.EXIT_CONFIG
    return common.EXIT_OK


COMMANDS = {"probe": cmd_probe}


def register(with_config: AddParser) -> None:
    sp = with_config("probe", "run a remote probe (--config probe.toml), or on the central: "
                              "add a probe's key, list probes, revoke one")
    sp.add_argument("verb", nargs="?", choices=("add", "list", "revoke"),
                    help="omit to run as a probe; add NAME prints a new key once; list; "
                         "revoke NAME refuses that probe from now on")
    sp.add_argument("name", nargs="?", help="add, revoke: the probe's name (its location)")
    for action in sp._actions:  # one --config, two meanings: say both
        if action.dest == "config_opt":
            action.help = ("as a probe: its probe.toml (start from deploy/probe.example.toml); "
                           "add, list, revoke: the central's config (default: $ONWATCH_CONFIG "
                           "or /etc/onwatch/config.toml)")
    sp.epilog = ("On the central: `onwatch probe add shop-berlin` (prints the key and a "
                 "probe.toml). On the probe's machine: `onwatch probe --config "
                 "/etc/onwatch/probe.toml`. `onwatch validate probe.toml` checks that file.")
