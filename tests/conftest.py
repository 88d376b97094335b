"""Fixtures shared by the tests: local TCP and SMTP servers on 127.0.0.1 port 0, a probe
context, and no `onwatch run` process outliving its test."""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP

from checks.base import ProbeContext
from tests.pg import pg_url, store_opener  # noqa: F401  (fixtures for every test module)
from tests.support import Mailbox, kill_leftovers, login

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def _no_agent_left_running() -> AsyncIterator[None]:
    """A test that fails before stopping its agent still leaves no process behind (killed
    in the test's own event loop, so its pipes are closed too)."""
    yield
    await kill_leftovers()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Only an async test can start an agent: sync tests are spared an event loop.
    for item in items:
        if (inspect.iscoroutinefunction(getattr(item, "function", None))
                and isinstance(item, pytest.Function)
                and "_no_agent_left_running" not in item.fixturenames):
            item.fixturenames.append("_no_agent_left_running")


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    """The probe context the scheduler would hand a probe, closed after the test."""
    context = ProbeContext()
    yield context
    await context.close()


class Listeners:
    """The local servers a test started, closed after it."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []

    def port(self, server: asyncio.Server) -> int:
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    tracked = Listeners()
    yield tracked
    await tracked.close()


@pytest.fixture
def tcp_servers(listeners: Listeners) -> Serve:
    """`await start(handler, ssl_context=None)`: a TCP server (TLS when given a context) on
    127.0.0.1 port 0, returning its port; every server is closed after the test."""

    async def start(handler: Handler, context: ssl.SSLContext | None = None) -> int:
        return listeners.port(await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context))

    return start


@pytest.fixture
def smtp_servers(listeners: Listeners) -> Serve:
    """`await start(handler=None, *, starttls=None, implicit=None, login_as=None,
    hostname="mx.test", **options)`: aiosmtpd in this loop on 127.0.0.1 port 0, returning its
    port. `handler` defaults to a Mailbox accepting every address; `starttls` offers
    STARTTLS with that context, `implicit` wraps the listener in TLS, `login_as=(user,
    password)` accepts that one login; `options` go to aiosmtpd's SMTP. Closed after the
    test."""

    async def start(handler: Any = None, *, starttls: ssl.SSLContext | None = None,
                    implicit: ssl.SSLContext | None = None,
                    login_as: tuple[str, str] | None = None, hostname: str = "mx.test",
                    **options: Any) -> int:
        auth = login(*login_as) if login_as else None
        mailbox = handler if handler is not None else Mailbox()

        def factory() -> SMTP:
            return SMTP(mailbox, hostname=hostname, tls_context=starttls, authenticator=auth,
                        **options)

        loop = asyncio.get_running_loop()
        return listeners.port(await loop.create_server(factory, "127.0.0.1", 0, ssl=implicit))

    return start


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority for the module's local TLS servers (dovecot's, aiosmtpd's)."""
    return trustme.CA()


def script(*answers: bytes, linger: bool = True) -> Handler:
    """A line-protocol server (SMTP, IMAP, POP3, POS): sends answers[0], then answers each
    line it reads with the next (b"" means: hang up instead). After the last it waits for
    the client to leave, or (linger=False) hangs up at once."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for i, answer in enumerate(answers):
                if (i and not await reader.readline()) or not answer:
                    return
                writer.write(answer)
                await writer.drain()
            if linger:
                while await reader.read(1 << 16):  # bounded: the client sends a finite amount
                    pass
        finally:
            writer.close()

    return handle
