"""Test helpers shared by every test module: bounded waits, free ports, leak checks, a real
`onwatch run` process and the `onwatch` command, a local Apprise receiver, an aiosmtpd
mailbox.

Every wait here is bounded in time and in count; every address is loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import json
import math
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import trustme
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

ROOT = Path(__file__).resolve().parent.parent

#: The first pause between two polls; pauses double up to `every`, so a condition the event
#: loop makes true at once is seen at once, and a slow one is not polled in a busy loop.
FIRST_POLL = 0.01


async def wait_for(pred: Callable[[], Any], timeout: float, what: str,
                   every: float = 0.05) -> Any:
    """Poll `pred` (sync, or async: its result is awaited) until it returns something
    truthy, and return that. Bounded in time (`timeout` seconds) and so in count."""
    deadline = time.monotonic() + timeout
    pause = max(min(FIRST_POLL, every), 0.001)
    for _ in range(math.ceil(timeout / pause) + 2):
        got = pred()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(pause)
        pause = min(pause * 2, every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_ports(count: int, host: str = "127.0.0.1",
               kind: socket.SocketKind = socket.SOCK_STREAM) -> list[int]:
    """`count` distinct ports nobody listens on (TCP, or `kind=socket.SOCK_DGRAM`; host "::1"
    for IPv6 loopback): bound at once by us, then released, so connecting is refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(family, kind)) for _ in range(count)]
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """One port nobody listens on (see free_ports)."""
    return free_ports(1, host, kind)[0]


async def no_leaks(ports: Iterable[int], fds_before: int, timeout: float = 5.0) -> None:
    """Wait until this process has no TCP connection to any of `ports` and no more open
    file descriptors than `fds_before` (what a probe must leave behind once it is done)."""
    me, watched = psutil.Process(), set(ports)

    def client_sockets() -> list[Any]:
        return [c for c in me.net_connections(kind="tcp") if c.raddr and c.raddr.port in watched]

    await wait_for(lambda: not client_sockets(), timeout, "client sockets still open")
    await wait_for(lambda: me.num_fds() <= fds_before, timeout, "file descriptors leaked")


@dataclass
class LocalCerts:
    ca: trustme.CA
    ca_file: str  # the CA's certificate, for a probe's ca_file
    server: ssl.SSLContext  # a server certificate for 127.0.0.1 and localhost, from `ca`


def local_certs(directory: Path, days: int) -> LocalCerts:
    """A new CA (its PEM written into `directory`) and a server context whose certificate
    expires in `days` days."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
    ca.issue_cert("127.0.0.1", "localhost", not_after=expires).configure_cert(server)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return LocalCerts(ca, str(ca_file), server)


def query(state: Path, sql: str, *params: Any) -> list[Any]:
    """Rows from the store in `state`, opened read-only (as the CLI and an operator would)."""
    db = sqlite3.connect(f"file:{state / 'onwatch.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


async def outbox_delivered(state: Path) -> bool:
    """Whether some message in the store's outbox is marked delivered."""
    return bool(query(state, "SELECT 1 FROM outbox WHERE status = 'delivered'"))


async def raw_request(address: str, head: bytes, body: bytes = b"") -> int:
    """One HTTP request written byte for byte (what a client library would refuse to send:
    broken headers, odd charsets); returns the status the server answered."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(line.split()[1])


def onwatch(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The `onwatch` command (`python -m agent ...`) run from the repository, as a user would."""
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@dataclass
class Receiver:
    """An aiohttp app standing in for a notification service behind Apprise's json://."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    #: Per path ("/alice"): answer this status instead of `status`.
    statuses: dict[str, int] = field(default_factory=dict)
    #: While set, requests are held without an answer (a hanging service).
    hang: asyncio.Event | None = None
    #: Every request, including refused ones: (path, status answered).
    attempts: list[tuple[str, int]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0
    #: Where it listens (a namespace test's link address; loopback otherwise).
    host: str = "127.0.0.1"
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Receiver:
        """Start listening (again, on the same port after `close()`)."""
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    @property
    def url(self) -> str:
        return f"json://{self.host}:{self.port}/notify"

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_path"] = request.path
        status = self.statuses.get(request.path, self.status)
        self.attempts.append((request.path, status))
        if self.hang is not None and self.hang.is_set():
            self.messages.append(body)  # it arrived; the answer never comes
            await self._released.wait()
            return web.json_response({}, status=503)
        if status < 300:
            self.messages.append(body)
        return web.json_response({}, status=status)

    def titles(self) -> list[str]:
        return [m.get("title", "") for m in self.messages]

    async def close(self) -> None:
        self._released.set()
        if self.runner:
            await self.runner.cleanup()


@dataclass
class AgentProcess:
    """A real `onwatch run` process: its log (JSON lines from stderr), its HTTP address once
    started, its state directory, and a bounded stop (SIGTERM, or SIGKILL for a crash)."""

    proc: asyncio.subprocess.Process
    config: Path
    log_lines: list[dict[str, Any]] = field(default_factory=list)
    raw_log: list[str] = field(default_factory=list)
    address: str = ""
    state_dir: Path | None = None  # as the agent logged it in agent_started
    _reader: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.raw_log.append(text)
            with contextlib.suppress(ValueError):
                self.log_lines.append(json.loads(text))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log_lines if e.get("event") == name]

    async def event(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """The first log event of that name, waiting for it: the log is read
        from a pipe, so it can arrive after the effect a test has just seen."""
        return (await wait_for(lambda: self.events(name), timeout, f"a {name} log event"))[0]

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(self.base_url + path) as r:
            return r.status, await r.text()

    async def metric(self, line_prefix: str) -> float | None:
        _, text = await self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`onwatch ARGS --config <this agent's config>`, off the event loop."""
        return await asyncio.to_thread(onwatch, *args, "--config", str(self.config))

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and wait for the exit code; killed if it is not gone by `timeout`."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            if self._reader:
                await asyncio.wait_for(self._reader, 5)
        return code


#: Every process start_agent started, so that conftest can kill what a test left running.
STARTED: list[AgentProcess] = []


async def start_agent(config_text: str, tmp: Path, *, wait_started: bool = True,
                      timeout: float = 20.0) -> AgentProcess:
    """Write `config_text` to tmp/onwatch.toml and start `onwatch run` on it; unless
    wait_started=False, return once it logged agent_started (its address is known)."""
    cfg = tmp / "onwatch.toml"
    cfg.write_text(config_text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT), env=env)
    agent = AgentProcess(proc, cfg)
    STARTED.append(agent)
    agent._reader = asyncio.create_task(agent._read())
    if wait_started:
        async def started() -> Any:
            if proc.returncode is not None:
                raise AssertionError(f"agent exited {proc.returncode}: {agent.raw_log[-20:]}")
            return agent.events("agent_started")

        try:
            ev = await wait_for(started, timeout, "agent_started in the log")
        except BaseException:
            await agent.stop(signal.SIGKILL)
            raise
        agent.address = ev[0]["listen"]
        agent.state_dir = Path(ev[0]["state_dir"])
    return agent


async def kill_leftovers() -> None:
    """SIGKILL every agent process a test started and did not stop (conftest calls this)."""
    while STARTED:
        agent = STARTED.pop()
        if agent.proc.returncode is None:
            await agent.stop(signal.SIGKILL)


# --- SMTP ---------------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd handler: accepts RCPT for the `known` addresses only (every address when
    None), keeps each message's bytes in `messages`, and passes it to `deliver` (as an MDA
    would) unless `drop` is set."""

    def __init__(self, known: Iterable[str] | None = None,
                 deliver: Callable[[bytes], None] | None = None) -> None:
        self.known = None if known is None else set(known)
        self.deliver = deliver
        self.drop = False
        self.messages: list[bytes] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.known is not None and address not in self.known:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(envelope.content)
        if self.deliver is not None and not self.drop:
            self.deliver(envelope.content)
        return "250 Message accepted for delivery"


def login(user: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator accepting this one login; any other gets 535."""

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    return authenticator
