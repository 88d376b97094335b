"""ICMP probe: `count` echo requests to one address; packet loss and round-trip time.

Config keys:
  host        name or address (IPv6 literals as they are, no brackets)
  ip_version  4 or 6: which address of a name to ping (default: the first one resolved)
  count       echo requests per run, 1-20 (default 3)
  wait        how long replies are awaited after the requests went out (default "1s")
  max_loss    percent of requests that may go unanswered, 0-100 or "N%" (default 50):
              more lost fails the check
  max_rtt     an average round trip above this marks the check degraded (default: none)

Contract (see checks/base.py): the requests go out back-to-back, then the probe listens
for the replies for at most `wait`. That window is part of the measurement, as `ping -W`:
loss needs an end to listening, and the scheduler's deadline would turn every lost packet
into a bare timeout with no loss figure. It is not a retry and not a sleep: keep `wait`
shorter than the check's `timeout`. The requests are not spaced out, because a probe does
not sleep; `count` close requests still show a link that drops packets.

Sockets, in this order: an unprivileged ICMP datagram socket (Linux allows it to the
groups in `net.ipv4.ping_group_range`, which also governs ICMPv6), then a raw socket
(root or CAP_NET_RAW). When neither is allowed, the check fails with error_kind
`internal` — not the target's fault — and a reason that says what to configure. The
socket is connected, so the kernel delivers only the target's packets, and a reply counts
only if it carries this run's random token. It is closed on every exit.

Failure classification:
  dns        the host name does not resolve (to an address of `ip_version`)
  connect    no reply at all, or the request could not be sent (no route, ...)
  assertion  replies came, but more than `max_loss` percent were lost
  internal   this process may not send ICMP echo (see above)
(timeout is the scheduler's.) ICMP errors (destination unreachable) are not read: they
count as loss.

latency_s covers the whole run. Observations: replies, loss_ratio (0-1) and, with any
reply, rtt_min_s, rtt_avg_s, rtt_max_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from agent.fields import Section, format_duration, show
from checks import _input
from checks._net import Failed
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

ECHO_REQUEST: Final = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY: Final = {socket.AF_INET: 0, socket.AF_INET6: 129}
PROTO: Final = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
MAX_PACKET: Final = 2048  # our echo is 24 bytes; a longer reply is read truncated
FIX: Final = ('allow unprivileged ping with `sysctl -w net.ipv4.ping_group_range="0 2147483647"`'
              " (and a file in /etc/sysctl.d/ to keep it), or give onwatch the CAP_NET_RAW "
              "capability (AmbientCapabilities=CAP_NET_RAW in its systemd unit)")


@dataclass(frozen=True, slots=True)
class IcmpSpec:
    host: str
    ip_version: int | None = None
    count: int = 3
    wait: float = 1.0
    max_loss: float = 50.0
    max_rtt: float | None = None


def parse(sec: Section) -> IcmpSpec:
    host = _input.host(sec)
    version: Any = sec.value("ip_version")
    if version is not None and (isinstance(version, bool) or version not in (4, 6)):
        sec.error("ip_version", f"must be 4 or 6, got {show(version)}")
        version = None
    count = sec.integer("count", 3, low=1, high=20)
    wait = sec.duration("wait", 1.0)
    max_loss = sec.percent("max_loss", 50.0)
    return IcmpSpec(host, version, count, wait, max_loss, sec.optional_duration("max_rtt"))




def target(spec: IcmpSpec) -> str:
    return spec.host


async def probe(spec: IcmpSpec, ctx: ProbeContext) -> CheckResult:
    """One burst of echo requests; see the module docstring for the classification."""
    started = time.perf_counter()
    try:
        family, addr = await _resolve(spec)
        sock = open_socket(family)
        try:
            rtts = await _ping(sock, family, addr, spec)
        finally:
            sock.close()
        return assess(spec, rtts, time.perf_counter() - started)
    except Failed as failed:
        return failed.result(started, {})


async def _resolve(spec: IcmpSpec) -> tuple[socket.AddressFamily, Any]:
    want = {4: socket.AF_INET, 6: socket.AF_INET6}.get(spec.ip_version or 0, socket.AF_UNSPEC)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            spec.host, None, family=want, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        v = f" to an IPv{spec.ip_version} address" if spec.ip_version else ""
        raise Failed(ErrorKind.DNS, f"cannot resolve {spec.host}{v}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    return family, addr


def open_socket(family: socket.AddressFamily,
                kinds: Sequence[socket.SocketKind] = (socket.SOCK_DGRAM, socket.SOCK_RAW)
                ) -> socket.socket:
    """A non-blocking ICMP socket of the first kind the kernel allows us."""
    for kind in kinds:
        try:
            sock = socket.socket(family, kind, PROTO[family])
        except PermissionError:
            continue
        except OSError as exc:
            v = "6" if family == socket.AF_INET6 else "4"
            raise Failed(ErrorKind.INTERNAL, f"cannot open an ICMP socket for IPv{v}: "
                                             f"{exc.strerror or exc}") from None
        sock.setblocking(False)
        return sock
    raise Failed(ErrorKind.INTERNAL, not_permitted())


def not_permitted(range_file: str = "/proc/sys/net/ipv4/ping_group_range") -> str:
    try:
        with open(range_file, encoding="ascii") as f:
            now = f'; net.ipv4.ping_group_range is "{" ".join(f.read(64).split())}"'
    except (OSError, ValueError):
        now = ""
    return (f"this process (uid {os.getuid()}, gid {os.getgid()}) may not send ICMP echo "
            f"requests{now}: {FIX}")


def echo_request(family: socket.AddressFamily, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP(v6) echo request. The kernel fills in the ICMPv6 checksum (it covers the IPv6
    pseudo-header) and, on a datagram socket, the identifier."""
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq)
    if family == socket.AF_INET:
        header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0,
                             checksum(header + payload), ident, seq)
    return header + payload


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_reply(data: bytes, family: socket.AddressFamily) -> tuple[int, bytes] | None:
    """(sequence, payload) of an echo reply, None for anything else. A raw IPv4 socket
    hands over the IP header too; a datagram socket and IPv6 never do."""
    if family == socket.AF_INET and data[:1] and data[0] >> 4 == 4:
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < 8:
        return None
    kind, _, _, _, seq = struct.unpack("!BBHHH", data[:8])
    return (seq, data[8:]) if kind == ECHO_REPLY[family] else None


async def _ping(sock: socket.socket, family: socket.AddressFamily, addr: Any, spec: IcmpSpec
                ) -> list[float]:
    """Round-trip times of the replies that came within `wait` (one per answered request)."""
    loop = asyncio.get_running_loop()
    token = os.urandom(16)
    ident = int.from_bytes(token[:2], "big")
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    all_in = loop.create_future()

    def readable() -> None:
        for _ in range(64):  # bounded work per wake-up; the loop calls again if more wait
            try:
                data = sock.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a queued socket error (ICMP error on a connected socket)
                continue
            now, reply = time.perf_counter(), echo_reply(data, family)
            if reply is None or not reply[1].startswith(token):
                continue  # not ours: another probe's, or our own request on loopback (raw)
            seq = reply[0]
            if seq in sent and seq not in rtts:
                rtts[seq] = now - sent[seq]
                if len(rtts) == spec.count and not all_in.done():
                    all_in.set_result(None)

    try:
        sock.connect(addr)  # the kernel now delivers only this peer's packets
    except OSError as exc:
        raise Failed(ErrorKind.CONNECT, f"cannot send to {spec.host}: {exc.strerror}") from None
    loop.add_reader(sock.fileno(), readable)
    try:
        for seq in range(1, spec.count + 1):
            packet = echo_request(family, ident, seq, token)
            sent[seq] = time.perf_counter()
            try:
                sock.send(packet)
            except BlockingIOError:
                continue  # the send buffer is full: that request is lost
            except OSError as exc:
                raise Failed(ErrorKind.CONNECT, f"cannot send to {spec.host}: "
                                                f"{exc.strerror or exc}") from None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(spec.wait):
                await all_in
    finally:
        loop.remove_reader(sock.fileno())
        all_in.cancel()
    return list(rtts.values())


def assess(spec: IcmpSpec, rtts: Sequence[float], latency_s: float) -> CheckResult:
    """The verdict on one burst; pure apart from the result's timestamp."""
    received, lost = len(rtts), spec.count - len(rtts)
    loss = lost / spec.count
    obs = {"replies": float(received), "loss_ratio": loss}
    if not rtts:
        return CheckResult.failure(
            ErrorKind.CONNECT, f"no reply from {spec.host} ({lost} of {spec.count} echo requests "
                               f"unanswered within {format_duration(spec.wait)})", latency_s, obs)
    avg = sum(rtts) / received
    obs |= {"rtt_min_s": min(rtts), "rtt_avg_s": avg, "rtt_max_s": max(rtts)}
    if loss * 100 > spec.max_loss:
        return CheckResult.failure(
            ErrorKind.ASSERTION, f"{lost} of {spec.count} echo requests to {spec.host} lost "
                                 f"({loss * 100:.0f}% > max_loss {spec.max_loss:g}%)",
            latency_s, obs)
    reason = (f"{received}/{spec.count} replies from {spec.host}, rtt avg {_ms(avg)} "
              f"(min {_ms(min(rtts))}, max {_ms(max(rtts))})")
    slow = spec.max_rtt is not None and avg > spec.max_rtt
    if slow and spec.max_rtt is not None:
        reason += f"; slow: avg above max_rtt {format_duration(spec.max_rtt)}"
    return CheckResult.success(latency_s, reason, obs, degraded=slow)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}ms"
