"""A damaged store gets words, not a traceback: exit 2, where it is, and what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.incidents import Incident, State
from agent.store.sqlite import Store
from tests.support import ROOT


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "onwatch.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp_path / 'state'}"
listen = "127.0.0.1:0"
[[contacts]]
name = "ops"
urls = ["json://127.0.0.1:9/ops"]
[[checks]]
name = "pos"
type = "tcp"
host = "127.0.0.1"
port = 9
contacts = ["ops"]
""")
    return cfg


def _store_with_incidents(state: Path, n: int = 300) -> Path:
    store = Store.open(state)
    with store.tx():
        for i in range(1, n + 1):
            store.save_incident(Incident(i, "pos", "pos is down", "high", State.RESOLVED,
                                         "connection refused " * 20, 1000.0 + i, 999.0 + i))
    store.close()
    return state / "onwatch.db"


def _header_overwritten(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"\x00garbage" * 12)


def _pages_overwritten(db: Path) -> None:
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(4096)
        f.write(b"\xde\xad\xbe\xef" * ((size - 4096) // 4))


def onwatch(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("damage", [_header_overwritten, _pages_overwritten])
@pytest.mark.parametrize("command", [("incidents",), ("show", "1"), ("run",)])
def test_a_damaged_store_is_named_with_what_to_do(tmp_path: Path, damage, command) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(tmp_path)
    db = _store_with_incidents(tmp_path / "state")
    damage(db)
    res = onwatch(cfg, *command)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    assert f"the store at {db} is damaged" in res.stderr, res.stderr
    assert "restore the file from a backup" in res.stderr
    assert f"mv {db} {db}.damaged" in res.stderr
    assert "permission" not in res.stderr
