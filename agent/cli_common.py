"""What every `onwatch` sub-command shares: exit codes, loading the config, opening the
store to read, calling the running agent, and how times and people are shown.

The command modules (agent/cli.py and agent/cli_*.py) import this and nothing of each
other, so the command line has no import loop: agent/cli.py only gathers the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from agent import config as configmod
from agent.config import Config, ConfigError

if TYPE_CHECKING:
    from agent.store.base import Store

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
#: A usage error (BSD's EX_USAGE), not argparse's 2: a script or systemd can tell a
#: mistyped command from a broken config.
EXIT_USAGE = 64


def load(path: str) -> Config | None:
    try:
        return configmod.load(path)
    except ConfigError as exc:
        print(f"{exc.path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        if os.geteuid() != 0 and any("Permission denied" in p for p in exc.problems):
            # deploy/install.sh makes /etc/onwatch root's only (it holds secrets).
            print("  (the config is readable by root only: run it with sudo)", file=sys.stderr)
        from pathlib import Path

        from agent.config_probe import is_probe_file

        if is_probe_file(Path(path)):
            print(f"  (this is a remote probe's file: run it with `onwatch probe --config "
                  f"{path}`)", file=sys.stderr)
        return None


def run_loop(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # no uvloop on this platform: asyncio's own loop works too
        asyncio.run(coro)
        return
    uvloop.run(coro)


def read_store(args: argparse.Namespace) -> Store | int:
    """The store of the config in `args`, read-only; or the exit code of the problem."""
    from agent.store.base import StoreError, open_store
    from agent.store.sqlite import StoreDamaged

    cfg = load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    try:
        return open_store(cfg, readonly=True)
    except StoreError as exc:
        print(f"onwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, StoreDamaged) else EXIT_FAIL


def ts(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def api(cfg: Config, method: str, path: str, body: dict[str, object] | None = None
         ) -> tuple[int, dict[str, object]]:
    """Call the running agent's API; mutations go through the daemon, the one writer."""
    import json
    import urllib.error
    import urllib.request

    state = cfg.agent.state_dir
    try:
        address = (state / "agent.addr").read_text().strip()
        token = cfg.agent.api_token or (state / "api.token").read_text().strip()
    except OSError:
        raise SystemExit(f"onwatch: the agent for {cfg.source} has not been started "
                         f"(no {state}/agent.addr); start it with `onwatch run`") from None
    req = urllib.request.Request(
        f"http://{address}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": exc.reason}
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"onwatch: the agent at {address} does not answer ({exc}); "
                         "is `onwatch run` running?") from None


def act(args: argparse.Namespace, path: str, body: dict[str, object], done: str) -> int:
    cfg = load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    status, answer = api(cfg, "POST", path, body)
    if status >= 400:
        print(f"onwatch: {answer.get('error', status)}", file=sys.stderr)
        return EXIT_FAIL
    print(done.format(**answer))
    return EXIT_OK


def me() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"
