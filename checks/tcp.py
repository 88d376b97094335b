"""TCP probe: connect, optionally send bytes and expect bytes back (POS terminals, gateways).

Config keys:
  host        name or address (IPv6 literals as they are, no brackets)
  port        1-65535
  send        text sent after connecting (TOML escapes such as "\r\n" work)
  expect      text that must appear in what the server sends back
  max_read    how much is read at most while waiting for `expect` (default "64KiB")
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.fields import Section
from checks.base import CheckResult, ProbeContext


@dataclass(frozen=True, slots=True)
class TcpSpec:
    host: str
    port: int
    send: bytes = b""
    expect: bytes = b""
    max_read: int = 64 * 1024


def parse(sec: Section) -> TcpSpec:
    host = sec.string("host")
    port = sec.integer("port", low=1, high=65535)
    send = sec.string("send", "", nonempty=False).encode()
    expect = sec.string("expect", "", nonempty=False).encode()
    max_read = sec.size("max_read", 64 * 1024)
    return TcpSpec(host, port, send, expect, max_read)


def target(spec: TcpSpec) -> str:
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"{host}:{spec.port}"


async def probe(spec: TcpSpec, ctx: ProbeContext) -> CheckResult:
    raise NotImplementedError("tcp probe: being written")
