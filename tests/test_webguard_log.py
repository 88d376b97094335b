"""What the agent logs when a handler fails: the route's pattern, never the path (paths hold
ack tokens, sign-in secrets, intake tokens). A real aiohttp server on loopback."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from agent import webguard

SECRET = "s3cr3t-link-token-that-must-not-be-logged"


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def test_a_failing_handler_logs_its_route_not_the_secret_in_its_path() -> None:
    app = web.Application()
    webguard.install(app)
    app.router.add_post("/ack/{token}", _boom)
    app.router.add_post("/api/v1/intake/alertmanager/{token}", _boom)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        with capture_logs() as logs:
            async with aiohttp.ClientSession() as s:
                for path in (f"/ack/{SECRET}", f"/api/v1/intake/alertmanager/{SECRET}"):
                    async with s.post(server.make_url(path)) as r:
                        assert r.status == 500
        failed = [e for e in logs if e["event"] == "request_failed"]
        assert [e["route"] for e in failed] == ["/ack/{token}",
                                                "/api/v1/intake/alertmanager/{token}"]
        assert SECRET not in repr(logs)
    finally:
        await server.close()
