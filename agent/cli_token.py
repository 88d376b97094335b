"""`onwatch token create | list | revoke`: personal API tokens.

A personal token makes API calls act as its person (recorded in the timeline
with via "api"), where the shared `[agent] api_token` acts as whatever name a
script gives. `create --for NAME` prints the token once: only its SHA-256 is
kept (agent/store/auth.py), so a lost token is revoked and made again, never
shown again. The commands write the store directly (tokens are not incidents:
the engine does not own them), so they work whether or not the agent runs,
and the agent sees a new or revoked token at its next request.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from agent import cli_common as common

AddParser = Callable[..., argparse.ArgumentParser]


def cmd_token(args: argparse.Namespace) -> int:
    from agent.store.auth import AuthStore
    from agent.store.base import StoreError, open_store

    cfg = common.load(args.config)
    if cfg is None:
        return common.EXIT_CONFIG
    if args.verb == "create" and args.person not in cfg.contacts:
        print(f"onwatch: --for needs a contact's name from the config (contacts: "
              f"{', '.join(cfg.contacts) or 'none'}), got {args.person!r}", file=sys.stderr)
        return common.EXIT_CONFIG if args.person else 64
    if args.verb == "revoke" and args.id is None:
        print("onwatch: token revoke needs the token's id (see `onwatch token list`)",
              file=sys.stderr)
        return 64
    try:
        store = open_store(cfg)
    except StoreError as exc:
        print(f"onwatch: {exc}", file=sys.stderr)
        return common.EXIT_FAIL
    try:
        auth, now = AuthStore(store), time.time()
        if args.verb == "create":
            with store.tx():
                tid, token = auth.add_token(args.person, now, args.label or "")
            print(f"token #{tid} for {args.person} (shown once; keep it secret):")
            print(token)
            return common.EXIT_OK
        if args.verb == "revoke":
            with store.tx():
                done = auth.revoke_token(args.id, now)
            if not done:
                print(f"onwatch: no unrevoked token #{args.id}", file=sys.stderr)
                return common.EXIT_FAIL
            print(f"token #{args.id} revoked")
            return common.EXIT_OK
        rows = auth.tokens()
        for t in rows:
            state = "revoked " + common.ts(t.revoked_at) if t.revoked_at else "active"
            print(f"#{t.id:<4} {t.person:<14} created {common.ts(t.created_at)}  last used "
                  f"{common.ts(t.last_used_at)}  {state}  {t.label}")
        if not rows:
            print("no personal tokens")
        return common.EXIT_OK
    finally:
        store.close()


COMMANDS = {"token": cmd_token}


def register(with_config: AddParser) -> None:
    sp = with_config("token", "personal API tokens: create one for a person, list, revoke")
    sp.add_argument("verb", choices=("create", "list", "revoke"),
                    help="create a token (printed once), list them, or revoke one")
    sp.add_argument("id", nargs="?", type=int, help="revoke: the token's id")
    sp.add_argument("--for", dest="person", default="",
                    help="create: the contact the token acts as (a client's as acme.ana)")
    sp.add_argument("--label", default="", help="create: what the token is for (shown in list)")
