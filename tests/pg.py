"""PostgreSQL for the tests: a fresh database per test, and the store fixture over both stores.

The server is the machine's (127.0.0.1:5432, trust auth; `ONWATCH_TEST_PG` names
another server's base URL). Each test that asks gets a database of its own,
created for it and dropped after it, so tests never see each other's rows.

Under CI (`CI=true`) a PostgreSQL test never skips: no server is a failure.
Elsewhere it skips, saying why.

`store_opener` is parametrised over both stores: a test written against it runs
on SQLite and on PostgreSQL. It returns a function that opens (or reopens) the
test's one store.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from agent.store.base import Store

BASE = os.environ.get("ONWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
Opener = Callable[..., Store]


@functools.cache
def unreachable() -> str | None:
    """None when the test server answers, else why not."""
    try:
        with psycopg.connect(f"{BASE}/postgres", connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {BASE} ({str(exc).strip()})"


def need_server() -> None:
    why = unreachable()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; under CI PostgreSQL tests never skip (.ci/run starts it)")
    pytest.skip(why)


def create_database() -> str:
    """A new, empty database; returns its URL (drop it with `drop_database`)."""
    need_server()
    name = f"onwatch_t_{secrets.token_hex(6)}"
    with psycopg.connect(f"{BASE}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{BASE}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{BASE}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database for this test, dropped afterwards."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """`open(readonly=False)` -> the test's store, on SQLite and on PostgreSQL."""
    opened: list[Store] = []
    if request.param == "sqlite":
        from agent.store.sqlite import SqliteStore

        def open_sqlite(readonly: bool = False) -> Store:
            opened.append(SqliteStore.open(tmp_path / "state", readonly=readonly))
            return opened[-1]

        yield open_sqlite
        return
    from agent.store.pg import PgStore

    url = create_database()

    def open_pg(readonly: bool = False) -> Store:
        opened.append(PgStore.open(url, readonly=readonly, name="onwatch-test"))
        return opened[-1]

    try:
        yield open_pg
    finally:
        for store in opened:
            store.close()
        drop_database(url)
