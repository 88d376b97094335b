"""The `onwatch` command line's grammar: every command and argument, each with its help.

`build_parser(commands)` wires each sub-command to its function in
`commands` (agent/cli.py). A usage error (an unknown option, a missing
argument) exits EXIT_USAGE, 64 (BSD's EX_USAGE), not argparse's 2, so that a
script or systemd can tell a mistyped command from a broken config (2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import NoReturn

import agent
from agent.cli_common import EXIT_USAGE
from agent.vocab import SEVERITIES, Severity

DEFAULT_CONFIG = "/etc/onwatch/config.toml"
Command = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    p = Parser(prog="onwatch", description="Monitoring agent with escalation. Exit codes: 0 ok, "
               "1 a failed check or a runtime problem, 2 a broken config or a start-up problem, "
               f"{EXIT_USAGE} a usage error.")
    p.add_argument("--version", action="version", version=f"onwatch {agent.version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, positional: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        if positional:
            sp.add_argument("config_pos", nargs="?", metavar="CONFIG",
                            help="config file (the same as --config)")
        sp.add_argument("--config", "-c", dest="config_opt", metavar="PATH",
                        help=f"config file (default: $ONWATCH_CONFIG or {DEFAULT_CONFIG})")
        sp.set_defaults(func=commands[name])
        return sp

    sp = command("run", "run the agent until SIGTERM/SIGINT; SIGHUP reloads the config")
    sp.add_argument("--reload-config", metavar="PATH",
                    help="on SIGHUP read this file when it exists, else --config again "
                         "(the systemd unit's reload stages the new config there)")
    command("validate", "check a config file (the central's, or a probe.toml) and report "
                        "every problem", positional=True)
    sp = command("check", "run one check once and print its result", positional=True)
    sp.add_argument("name", help="the check's name in the config")
    sp = command("incidents", "list incidents from the store")
    sp.add_argument("--open", action="store_true", help="only open ones")
    sp.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    sp = command("show", "show one incident and its timeline")
    sp.add_argument("id", type=int, help="the incident's number")
    _incident_commands(command)
    sp = command("maintenance", "start, list or end maintenance windows (nothing pages)")
    sp.add_argument("action", choices=("start", "list", "end"), help="what to do")
    sp.add_argument("id", nargs="?", type=int, help="the window to end")
    sp.add_argument("--check", action="append", help="a check (repeatable)")
    sp.add_argument("--tag", action="append", help="every check with this tag (repeatable)")
    sp.add_argument("--for", dest="duration", default="1h", help='how long, e.g. "2h"')
    sp.add_argument("--reason", default="", help="why (shown in the list and the timeline)")
    _by(sp, "who starts or ends it")
    sp = command("test-notify", "send a test message through every channel of a contact")
    sp.add_argument("contact", help="the contact's name in the config")
    sp.add_argument("--wait", type=_seconds, default=120.0,
                    help="how long to wait for the answer on reply channels (default 120s)")
    sp = command("backup", "copy the store consistently, also while the agent runs")
    sp.add_argument("dest", metavar="DEST",
                    help="a new file, or a directory to put onwatch-YYYYMMDD-HHMMSS.db in")
    from agent.cli_report import register

    register(command)
    from agent.cli_token import register as register_token

    register_token(command)
    from agent.cli_probe import register as register_probe

    register_probe(command)
    from agent.cli_migrate import register as register_migrate

    register_migrate(command)
    return p


def _incident_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """ack, resolve, note, declare and update: what people do to incidents (through the
    agent)."""
    sp = command("ack", "acknowledge an incident (stops its escalation)")
    sp.add_argument("id", type=int, help="the incident's number")
    _by(sp, "who acknowledges")
    sp = command("resolve", "resolve an incident with its cause and fix")
    sp.add_argument("id", type=int, help="the incident's number")
    sp.add_argument("--cause", default="", help="what caused it (for the timeline)")
    sp.add_argument("--fix", default="", help="what fixed it (for the timeline)")
    _by(sp, "who resolves")
    sp = command("note", "add a note to an incident's timeline")
    sp.add_argument("id", type=int, help="the incident's number")
    sp.add_argument("text", nargs="+", help="the note (several words are joined)")
    _by(sp, "who writes the note")
    sp = command("declare", "open an incident by hand (what no check can see)")
    sp.add_argument("--title", required=True, help="what is wrong, in a few words")
    sp.add_argument("--severity", choices=SEVERITIES, default=Severity.HIGH,
                    help="default high; a [[routes]] entry may pick the policy by severity")
    sp.add_argument("--policy", help="the escalation policy to page with (default: the "
                                     "severity's route, else [defaults] policy)")
    sp.add_argument("--reason", default="", help="more detail, shown in the pages")
    _by(sp, "who declares")
    sp = command("update", "post a public update (status page, subscribers) on an incident")
    sp.add_argument("id", type=int, help="the incident")
    sp.add_argument("--public", required=True, metavar="TEXT",
                    help="what customers read: plain words, no internal detail")
    _by(sp, "who posts it")


def _seconds(text: str) -> float:
    from agent.fields import parse_duration

    value = parse_duration(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f'expected a duration like "30s" or "2m", got {text!r}')
    return value


def _by(sp: argparse.ArgumentParser, who: str) -> None:
    sp.add_argument("--by", metavar="NAME", help=f"{who} (default: your user name)")
