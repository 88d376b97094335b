"""What the installer ships and what a new user types: starter config, secrets, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as configmod
from agent.cli import COMMANDS
from agent.cli_parser import EXIT_USAGE, build_parser
from tests.support import ROOT, Receiver, onwatch, start_agent, wait_for

CONTACTS = '[[contacts]]\nname = "ops"\nurls = ["json://127.0.0.1:9/ops"]\n'


def onwatch_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`onwatch` with extra environment variables (support.onwatch passes none)."""
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, **env})


def test_starter_config_validates_and_keeps_state_where_systemd_puts_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/onwatch")
    cfg = configmod.load(ROOT / "deploy" / "config.toml")
    assert cfg.agent.state_dir == Path("/var/lib/onwatch")
    assert cfg.agent.listen_host == "127.0.0.1"
    assert cfg.agent.service.retention == 400 * 86400
    assert [c.type for c in cfg.checks] == ["host"]
    out = onwatch("validate", str(ROOT / "deploy" / "config.toml"))
    assert out.returncode == 0 and "ok" in out.stdout


def test_the_unit_runs_what_the_installer_installs() -> None:
    unit = (ROOT / "systemd" / "onwatch.service").read_text()
    install = (ROOT / "deploy" / "install.sh").read_text()
    assert "ExecStart=/opt/onwatch/bin/onwatch run --config ${CREDENTIALS_DIRECTORY}" in unit
    assert "ExecReload=+/opt/onwatch/bin/onwatch-stage-config" in unit
    assert 'PREFIX=/opt/onwatch' in install and "onwatch-stage-config" in install
    assert "/usr/local/bin" not in unit


def test_secrets_named_relative_to_the_config_are_found_as_credentials(tmp_path: Path) -> None:
    """Under systemd the config sits in $CREDENTIALS_DIRECTORY with `secrets_<file>` beside it."""
    text = ('[agent]\nstate_dir = "/tmp/x"\n[[contacts]]\nname = "owner"\n'
            'urls_file = "secrets/owner.urls"\n[[checks]]\nname = "a"\ntype = "tcp"\n'
            'host = "127.0.0.1"\nport = 9\ncontacts = ["owner"]\n')
    etc, creds = tmp_path / "etc", tmp_path / "creds"
    (etc / "secrets").mkdir(parents=True)
    creds.mkdir()
    (etc / "config.toml").write_text(text)
    (etc / "secrets" / "owner.urls").write_text("json://127.0.0.1:1/etc\n")
    (creds / "config.toml").write_text(text)
    (creds / "secrets_owner.urls").write_text("json://127.0.0.1:1/cred\n")
    assert configmod.load(etc / "config.toml").contacts["owner"].urls == ("json://127.0.0.1:1/etc",)
    assert configmod.load(creds / "config.toml").contacts["owner"].urls == (
        "json://127.0.0.1:1/cred",)
    (creds / "secrets_owner.urls").unlink()
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(creds / "config.toml")
    assert "urls_file: cannot read" in str(err.value)


def test_version_and_usage_errors() -> None:
    out = onwatch("--version")
    assert out.returncode == 0 and out.stdout.startswith("onwatch ")
    for args in (["show"], ["frobnicate"], ["incidents", "--limit", "many"]):
        bad = onwatch(*args)
        assert bad.returncode == EXIT_USAGE, (args, bad.stderr)
        assert "usage:" in bad.stderr
    broken = onwatch("validate", str(ROOT / "pyproject.toml"))
    assert broken.returncode == 2  # a broken config keeps its own code


def test_every_argument_has_help() -> None:
    parser = build_parser(COMMANDS)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    missing = [f"{name} {action.dest}" for name, sp in sub.choices.items()
               for action in sp._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []
    assert all(a.help for a in sub._choices_actions)  # each command too


def test_show_finds_the_config_without_being_told(tmp_path: Path) -> None:
    """The hint in a page (`onwatch show 1`) works as printed: $ONWATCH_CONFIG, or /etc's."""
    state = tmp_path / "state"
    cfg = tmp_path / "config.toml"
    # A contact: a config that can page nobody watches nothing and does not load.
    cfg.write_text(f'[agent]\nstate_dir = "{state}"\n' + CONTACTS)
    from agent.store.sqlite import Store

    Store.open(state).close()
    out = onwatch_with({"ONWATCH_CONFIG": str(cfg)}, "show", "1")
    assert out.returncode == 1 and "no incident #1" in out.stderr


async def test_declare_pages_with_the_default_policy(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    cfg = f"""
[agent]
state_dir = "{tmp_path / 'state'}"
listen = "127.0.0.1:0"
[defaults]
policy = "standard"
[[contacts]]
name = "owner"
urls = ["{receiver.url}"]
[[policies]]
name = "standard"
[[policies.steps]]
after = "0s"
notify = ["owner"]
"""
    agent = await start_agent(cfg, tmp_path)
    try:
        out = await asyncio.to_thread(onwatch, "declare", "--title", "card payments refused",
                                      "--severity", "critical", "--config", str(agent.config))
        assert out.returncode == 0, out.stderr
        assert "policy standard" in out.stdout

        await wait_for(lambda: any("card payments refused" in t for t in receiver.titles()), 10,
                       "the declared incident's page")
    finally:
        await agent.stop()
        await receiver.close()
