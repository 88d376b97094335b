"""Delivery honours `send_timeout`, not Apprise's own 4 s read timeout: a service that
answers in 4.5 s with send_timeout = "5s" gets the message once, and it counts as sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from notifiers.channels import Message
from notifiers.delivery import deliver


@pytest.fixture
async def slow_service() -> AsyncIterator[tuple[int, list[float], list[float]]]:
    delay: list[float] = [4.5]
    received: list[float] = []

    async def post(request: web.Request) -> web.Response:
        await request.read()
        received.append(asyncio.get_running_loop().time())
        await asyncio.sleep(delay[0])  # the service is slow to answer, not the test
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/{tail:.*}", post)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1], received, delay
    await runner.cleanup()


MSG = Message("pos is down", "connection refused", "pos is down")


async def test_a_slow_service_within_send_timeout_is_delivered_once(
        slow_service: tuple[int, list[float], list[float]]) -> None:
    port, received, _ = slow_service
    [res] = await deliver([f"json://127.0.0.1:{port}/alice"], MSG, timeout=5.0)
    assert res.ok, res
    assert res.detail == "delivered"
    assert len(received) == 1  # no retry inside Apprise either
    assert res.elapsed_s >= 4.4


async def test_a_service_slower_than_send_timeout_fails_at_it(
        slow_service: tuple[int, list[float], list[float]]) -> None:
    port, received, delay = slow_service
    delay[0] = 3.0
    started = asyncio.get_running_loop().time()
    [res] = await deliver([f"json://127.0.0.1:{port}/alice"], MSG, timeout=1.5)
    took = asyncio.get_running_loop().time() - started
    assert not res.ok and res.network, res
    assert took < 2.9, took  # cut at the configured 1.5 s, not when the service answers
    assert len(received) == 1
