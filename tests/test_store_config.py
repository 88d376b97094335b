"""`[agent] store`: SQLite by default, a PostgreSQL URL from the config, ${ENV} or a file,
and its password never shown (agent/config.py, agent/store/base.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load

BASE = """
[agent]
state_dir = "state"
{line}

[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/x"]

[[checks]]
name = "web"
type = "tcp"
host = "127.0.0.1"
port = 9
contacts = ["alice"]
"""


def _write(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "onwatch.toml"
    path.write_text(BASE.format(line=line))
    return path


def test_no_store_key_means_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, ""))
    assert cfg.agent.store is None
    assert cfg.agent.store_shown == str(tmp_path / "state" / "onwatch.db")


def test_a_password_from_the_environment_is_used_and_never_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONWATCH_DB_PW", "hunter2-secret")
    cfg = load(_write(tmp_path, 'store = "postgresql://onwatch:${ONWATCH_DB_PW}@db/onwatch"'))
    assert cfg.agent.store == "postgresql://onwatch:hunter2-secret@db/onwatch"
    assert cfg.agent.store_shown == "postgresql://onwatch:***@db/onwatch"
    assert "hunter2" not in repr(cfg.agent.store_shown)


def test_the_url_may_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "db.url").write_text("postgresql://onwatch:pw@db/onwatch\n")
    cfg = load(_write(tmp_path, 'store_file = "db.url"'))
    assert cfg.agent.store == "postgresql://onwatch:pw@db/onwatch"


def test_a_store_that_is_no_postgresql_url_is_an_error_without_its_secret(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(_write(tmp_path, 'store = "mysql://root:topsecret@db/onwatch"'))
    text = str(err.value)
    assert "agent: store: must be a PostgreSQL URL" in text
    assert "topsecret" not in text and "mysql://root:***@db/onwatch" in text


def test_an_agent_that_cannot_reach_its_database_says_so_without_the_password(
        tmp_path: Path) -> None:
    from agent.store.sqlite import SqliteStore
    from tests.support import onwatch

    SqliteStore.open(tmp_path / "state").close()  # what migrate copies from
    (tmp_path / "db.url").write_text("postgresql://onwatch:hunter2-secret@127.0.0.1:1/x\n")
    cfg = _write(tmp_path, 'store_file = "db.url"')
    for args in (("run",), ("incidents",),
                 ("migrate", "--to", "postgresql://u:pw2@127.0.0.1:1/x")):
        done = onwatch(*args, "--config", str(cfg))
        out = done.stdout + done.stderr
        assert done.returncode in (1, 2), out
        assert "hunter2" not in out and "pw2" not in out, out
        assert "***@127.0.0.1:1" in out and "cannot be used" in out, out


def test_a_store_file_without_a_postgresql_url_names_store_file(tmp_path: Path) -> None:
    (tmp_path / "db.url").write_text("mysql://root:topsecret@db/onwatch\n")
    with pytest.raises(ConfigError) as err:
        load(_write(tmp_path, 'store_file = "db.url"'))
    assert err.value.problems == [
        'agent: store_file: must hold a PostgreSQL URL like "postgresql://onwatch@db.example/'
        "onwatch\" (leave it out for SQLite in state_dir), got 'mysql://root:***@db/onwatch'"]


@pytest.mark.parametrize(("buckets", "problem"), [
    ('["0s"]', 'bucket bounds must be above 0s, but check_duration_buckets[0] is "0s"'),
    ('["fast"]', 'must be durations like "250ms", but check_duration_buckets[0] is "fast"'),
    ('["1s", "100ms"]', 'must be in increasing order, each once (like ["100ms", "1s"])'),
])
def test_check_duration_buckets_problems_name_the_key(tmp_path: Path, buckets: str,
                                                       problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(_write(tmp_path, f"check_duration_buckets = {buckets}"))
    assert err.value.problems == [f"agent: check_duration_buckets: {problem}"]
