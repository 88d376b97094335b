"""The command line: validate, run refusing a broken start, incidents and show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tests.support import ROOT, onwatch

EXAMPLE = ROOT / "config.example.toml"


def test_example_config_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "ok, 4 checks (http, tcp)" in out


def test_validate_lists_every_problem_and_exits_2(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[checks]]\nname = "pos-terminal"\ntype = "tcp"\nhost = "h"\nport = 1\n'
                   'timeout = 10\n[[checks]]\nname = "x"\ntype = "ftp"\n')
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert 'checks[0] "pos-terminal": timeout: must be a duration like "10s", got 10' in err
    assert 'checks[1] "x": type: unknown check type "ftp"' in err


def test_run_with_broken_config_exits_2_before_touching_state(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nbogus = 1\n')
    res = onwatch("run", "--config", str(cfg))
    assert res.returncode == 2
    assert 'agent: unknown key "bogus"' in res.stderr
    assert not (tmp_path / "state").exists()


#: The least a config needs: something to watch and somebody to tell.
WATCH = ('[[contacts]]\nname = "ops"\nurls = ["json://127.0.0.1:9/ops"]\n'
         '[[checks]]\nname = "pos"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'
         'contacts = ["ops"]\n')


def test_run_with_unwritable_state_dir_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{blocker / "state"}"\nlisten = "127.0.0.1:0"\n'
                   + WATCH)
    res = onwatch("run", "--config", str(cfg))
    assert res.returncode == 2
    assert f"state directory {blocker / 'state'} cannot be used" in res.stderr


def test_run_with_address_in_use_names_it(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "st"}"\nlisten = "127.0.0.1:{port}"\n'
                       + WATCH)
        res = onwatch("run", "--config", str(cfg))
    assert res.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr


def test_incidents_before_first_run_says_what_to_do(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "st"}"\n' + WATCH)
    res = onwatch("incidents", "--config", str(cfg))
    assert res.returncode == 1
    assert "has `onwatch run` been started" in res.stderr


def test_check_unknown_name_lists_the_checks() -> None:
    res = onwatch("check", str(EXAMPLE), "nope")
    assert res.returncode == 2
    assert "no check named 'nope'" in res.stderr and "onwatch-itself" in res.stderr


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`onwatch show 1 | head`: the reader leaving is no traceback."""
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write fails with EPIPE
    try:
        res = subprocess.run([sys.executable, "-m", "agent", "validate", str(EXAMPLE)],
                             stdout=write, stderr=subprocess.PIPE, text=True, timeout=30,
                             cwd=ROOT)
    finally:
        os.close(write)
    assert res.returncode == 1
    assert res.stderr == ""
