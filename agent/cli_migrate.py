"""`onwatch migrate --to postgresql://…`: move a stopped agent's SQLite store to PostgreSQL.

The source is the SQLite store of the config's `state_dir`; the target an
empty PostgreSQL database (the schema is made there). The agent must be
stopped: the command takes the state directory's lock (agent/store/lock.py)
for the whole copy, so an agent cannot start meanwhile either, and refuses
when a running agent holds it. Every table is copied in one transaction
(agent/store/copy.py), then the rows are counted on both sides; any
difference is an error naming the table. The SQLite file is never changed.

Afterwards: set `[agent] store` to the URL (README, "High availability").
Exit codes: 0 copied and verified, 1 refused or a mismatch, 2 a broken config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

AddParser = Callable[..., argparse.ArgumentParser]


def cmd_migrate(args: argparse.Namespace) -> int:
    import psycopg

    from agent import cli
    from agent.store.base import StoreError, is_postgresql, redact
    from agent.store.copy import CopyError, copy_all, counts
    from agent.store.lock import LockHeld, StateLock
    from agent.store.pg import PgStore
    from agent.store.sqlite import SqliteStore

    cfg = cli._load(args.config)
    if cfg is None:
        return cli.EXIT_CONFIG
    if not is_postgresql(args.to):
        print(f"onwatch: --to must be a postgresql:// URL, got {redact(args.to)!r}",
              file=sys.stderr)
        return 64
    try:
        lock = StateLock.acquire(cfg.agent.state_dir)
    except LockHeld as exc:
        print(f"onwatch: {exc}; migrate copies a stopped agent's store", file=sys.stderr)
        return cli.EXIT_FAIL
    try:
        source = SqliteStore.open(cfg.agent.state_dir, readonly=True)
        target = PgStore.open(args.to, name="onwatch-migrate")
    except StoreError as exc:
        lock.release()
        print(f"onwatch: {exc}", file=sys.stderr)
        return cli.EXIT_FAIL
    try:
        copied = copy_all(source, target)
        theirs, ours = counts(source, list(copied)), counts(target, list(copied))
    except (CopyError, psycopg.Error) as exc:
        print(f"onwatch: nothing was copied: {redact(str(exc)).strip()}", file=sys.stderr)
        return cli.EXIT_FAIL
    finally:
        source.close()
        target.close()
        lock.release()
    wrong = {t: (theirs[t], ours[t]) for t in copied if theirs[t] != ours[t]}
    for table, n in copied.items():
        print(f"{table:<20} {n:>8} rows" + ("  MISMATCH" if table in wrong else ""))
    if wrong:
        print("onwatch: the copy does not match: " + ", ".join(
            f"{t} has {a} rows in SQLite but {b} in PostgreSQL" for t, (a, b) in wrong.items())
            + "; keep using the SQLite store and report this", file=sys.stderr)
        return cli.EXIT_FAIL
    print(f"copied {source.path} to {redact(args.to)}, every count verified. Next: set "
          f'[agent] store = "{redact(args.to)}" (the password from ${{ENV}} or store_file) '
          "and start onwatch.")
    return cli.EXIT_OK


COMMANDS = {"migrate": cmd_migrate}


def register(with_config: AddParser) -> None:
    sp = with_config("migrate", "copy a stopped agent's SQLite store into PostgreSQL and "
                                "verify the counts")
    sp.add_argument("--to", required=True, metavar="URL",
                    help="the target: postgresql://user[:password]@host/database (empty)")
