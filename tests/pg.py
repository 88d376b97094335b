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

import asyncio
import contextlib
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


class Proxy:
    """A TCP relay to the test server: `cut()` is a PostgreSQL outage for whoever connects
    through it (every connection dropped, new ones refused), `restore()` ends it."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, db_url: str) -> str:
        """`db_url` (a test database's) through this relay."""
        return db_url.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}")

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers.difference_update((writer, up_w))

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        await self.start()
