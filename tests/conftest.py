"""Fixtures shared by the probe tests."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def tcp_servers() -> AsyncIterator[Serve]:
    """`await start(handler, ssl_context=None)`: a TCP server (TLS when given a context) on
    127.0.0.1 port 0, returning its port; every server is closed after the test."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler, context: ssl.SSLContext | None = None) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


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
