"""The shared test helpers themselves: a wait that is wrong is a test that cannot fail."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.support import free_port, free_ports, no_leaks, wait_for


async def test_wait_for_takes_sync_and_async_predicates_and_returns_the_value() -> None:
    calls: list[int] = []

    def sync() -> list[int]:
        calls.append(1)
        return calls if len(calls) >= 3 else []

    async def later() -> str:
        return "yes"

    assert await wait_for(sync, 5, "three calls") == [1, 1, 1]
    assert await wait_for(later, 5, "an async answer") == "yes"


async def test_wait_for_gives_up_in_time_and_says_what_it_waited_for() -> None:
    calls = 0

    def never() -> bool:
        nonlocal calls
        calls += 1
        return False

    began = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out after 0\.2s waiting for the moon"):
        await wait_for(never, 0.2, "the moon", every=0.05)
    assert 0.2 <= time.monotonic() - began < 2.0
    assert 3 <= calls <= 25  # backs off from 10 ms to `every`, not a busy loop


async def test_wait_for_sees_what_the_loop_makes_true_soon() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, done.set)
    began = time.monotonic()
    await wait_for(done.is_set, 5, "the event")
    assert time.monotonic() - began < 1.0


def test_free_ports_are_distinct_and_refuse_connections() -> None:
    ports = free_ports(4)
    assert len(set(ports)) == 4
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", free_port())) != 0
    assert free_port(kind=socket.SOCK_DGRAM) > 0


async def test_no_leaks_fails_while_a_connection_is_open() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with pytest.raises(AssertionError, match="client sockets still open"):
            await no_leaks([port], 10_000, timeout=0.1)
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
    await no_leaks([port], 10_000)
