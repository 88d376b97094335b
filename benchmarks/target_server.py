"""A cheap HTTP target for the benchmarks, on 127.0.0.1 only.

    python3 benchmarks/target_server.py [--workers 1] [--impl raw|aiohttp] [--max-seconds 1800]

Prints one JSON line on stdout, `{"port": N}`, once it listens. Paths:

    /hang/<i>   never answered: the connection is held open until the client
                gives up (or --hang-max seconds pass), like a wedged backend
    anything    `200 OK`, a 2-byte body, `Connection: close`, then closed

The target must not be the bottleneck: on a 2-core machine it shares the CPU
with the agent under test. `--impl raw` (the default) is an asyncio Protocol on
uvloop that parses only the request line; it costs a fraction of what the
agent's client side costs per request. `--impl aiohttp` uses aiohttp's
low-level server (no router) for comparison. `--workers N` pre-forks N
processes that accept on one shared listening socket.

Bounded: the server exits by itself after --max-seconds, and on SIGTERM/SIGINT
(the parent forwards the signal to its workers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nok")
MAX_HEADER = 64 * 1024


class RawHttp(asyncio.Protocol):
    """One connection: read up to the end of the headers, answer (or hang), close."""

    hang_max = 60.0

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.timer is not None:  # hanging: ignore whatever else comes
            return
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEADER:
                self.transport.close()
            return
        parts = self.buf.split(b"\r\n", 1)[0].split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        if path.startswith(b"/hang/"):
            # Answer nothing; the client's deadline ends it (bounded by hang_max anyway).
            self.timer = asyncio.get_running_loop().call_later(self.hang_max,
                                                               self.transport.close)
            return
        self.transport.write(RESPONSE)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def _serve(sock: socket.socket, impl: str, hang_max: float, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    if impl == "raw":
        RawHttp.hang_max = hang_max
        server = await loop.create_server(RawHttp, sock=sock, backlog=4096)
    else:
        from aiohttp import web

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            if request.path.startswith("/hang/"):
                await asyncio.sleep(hang_max)
            return web.Response(text="ok", headers={"Connection": "close"})

        runner = web.ServerRunner(web.Server(handle), access_log=None, keepalive_timeout=0)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=4096).start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    if runner is not None:
        await runner.cleanup()
    else:
        server.close()


def _run(sock: socket.socket, impl: str, hang_max: float, max_seconds: float) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(sock, impl, hang_max, max_seconds))
    else:
        uvloop.run(_serve(sock, impl, hang_max, max_seconds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--impl", choices=("raw", "aiohttp"), default="raw")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hang-max", type=float, default=60.0)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    args = ap.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)
    sock.setblocking(False)
    print(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid(),
                      "workers": args.workers, "impl": args.impl}), flush=True)

    children: list[int] = []
    for _ in range(max(0, args.workers - 1)):
        pid = os.fork()
        if pid == 0:  # a worker: no event loop exists yet in the parent, so forking is safe
            _run(sock, args.impl, args.hang_max, args.max_seconds)
            os._exit(0)
        children.append(pid)
    try:
        _run(sock, args.impl, args.hang_max, args.max_seconds)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
