"""The icmp probe: real pings to 127.0.0.1 and ::1, and the verdict as a pure function.

Whether this process may open ICMP sockets at all is detected once: where it may not
(no ping_group_range for our group, no CAP_NET_RAW), the probe tests assert the readable
`internal` failure instead. Loss cannot be made on loopback, so loss and thresholds are
table-tested on `assess`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.fields import Section
from checks import icmp
from checks._net import Failed
from checks.base import ProbeContext, run_with_deadline
from checks.icmp import IcmpSpec, assess
from checks.result import CheckResult, ErrorKind

ROOT = Path(__file__).resolve().parent.parent


def allowed(family: socket.AddressFamily) -> str | None:
    """How this process may ping over `family`: "dgram", "raw", or None."""
    for kind, name in ((socket.SOCK_DGRAM, "dgram"), (socket.SOCK_RAW, "raw")):
        try:
            socket.socket(family, kind, icmp.PROTO[family]).close()
            return name
        except PermissionError:
            continue
    return None


@pytest.fixture(scope="module")
def may_ping() -> dict[socket.AddressFamily, str | None]:
    return {f: allowed(f) for f in (socket.AF_INET, socket.AF_INET6)}


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def check(spec: IcmpSpec, ctx: ProbeContext, timeout: float = 10.0) -> CheckResult:
    return await run_with_deadline(icmp.probe, spec, ctx, timeout)


def assert_not_permitted(result: CheckResult) -> None:
    assert result.error_kind is ErrorKind.INTERNAL
    assert "may not send ICMP echo requests" in result.reason
    assert 'sysctl -w net.ipv4.ping_group_range="0 2147483647"' in result.reason
    assert "AmbientCapabilities=CAP_NET_RAW" in result.reason


# --- real pings ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
async def test_ping_loopback(host: str, ctx: ProbeContext,
                             may_ping: dict[socket.AddressFamily, str | None]) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET6 and not has_ipv6_loopback():  # pragma: no cover
        pytest.skip("no IPv6 on loopback")
    spec = IcmpSpec(host, ip_version=4 if host == "localhost" else None, count=4)
    result = await check(spec, ctx)
    if may_ping[family] is None:
        assert_not_permitted(result)
        return
    assert result.ok, result.reason
    assert result.reason.startswith(f"4/4 replies from {host}, rtt avg ")
    assert result.observations["replies"] == 4
    assert result.observations["loss_ratio"] == 0
    obs = result.observations
    assert 0 < obs["rtt_min_s"] <= obs["rtt_avg_s"] <= obs["rtt_max_s"] < 1
    assert not result.degraded


async def test_max_rtt_marks_degraded(ctx: ProbeContext,
                                      may_ping: dict[socket.AddressFamily, str | None]) -> None:
    result = await check(IcmpSpec("127.0.0.1", max_rtt=1e-6), ctx)
    if may_ping[socket.AF_INET] is None:
        assert_not_permitted(result)
        return
    assert result.ok and result.degraded
    assert result.reason.endswith("; slow: avg above max_rtt 0.001ms")


async def test_unresolvable_name(ctx: ProbeContext) -> None:
    # localhost has no address of this version only where /etc/hosts lacks one: use a
    # literal of the other family, which getaddrinfo refuses without asking any server.
    result = await check(IcmpSpec("127.0.0.1", ip_version=6), ctx)
    assert result.error_kind is ErrorKind.DNS
    assert result.reason.startswith("cannot resolve 127.0.0.1 to an IPv6 address: ")


def test_without_permission_the_reason_says_what_to_configure() -> None:
    """The real probe in a child process that lost CAP_NET_RAW: it either pings through a
    datagram socket (the group is in ping_group_range) or names the fix."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or psutil.Process().uids().effective != 0:  # pragma: no cover
        pytest.skip("needs root and setpriv to drop CAP_NET_RAW")
    code = ("import asyncio; from checks import icmp; from checks.base import ProbeContext;"
            "r = asyncio.run(icmp.probe(icmp.IcmpSpec('127.0.0.1'), ProbeContext()));"
            "print(r.ok, r.error_kind, r.reason, sep='|')")
    run = subprocess.run([setpriv, "--bounding-set", "-net_raw", sys.executable, "-c", code],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    ok, kind, reason = run.stdout.strip().split("|", 2)
    if ok == "True":  # pragma: no cover - this machine allows unprivileged ping to root
        assert allowed(socket.AF_INET) == "dgram"
        return
    assert kind == "internal"
    assert reason.startswith("this process (uid 0, gid 0) may not send ICMP echo requests")
    assert reason.endswith(icmp.FIX)


def test_no_socket_kind_allowed_names_the_fix() -> None:
    with pytest.raises(Failed) as failed:
        icmp.open_socket(socket.AF_INET, kinds=())
    assert failed.value.kind is ErrorKind.INTERNAL
    assert failed.value.reason.endswith(icmp.FIX)


async def test_no_leaked_sockets(ctx: ProbeContext,
                                 may_ping: dict[socket.AddressFamily, str | None]) -> None:
    me = psutil.Process()
    fds_before = me.num_fds()
    for _ in range(20):
        await check(IcmpSpec("127.0.0.1", count=2), ctx)
        await check(IcmpSpec("127.0.0.1", count=2, wait=1.0), ctx, timeout=0.0001)
    assert me.num_fds() <= fds_before


# --- the verdict --------------------------------------------------------------------------


MS = 0.001


@pytest.mark.parametrize(
    ("spec", "rtts", "ok", "kind", "degraded", "reason"),
    [
        (IcmpSpec("gw", count=3), [1 * MS, 2 * MS, 3 * MS], True, None, False,
         "3/3 replies from gw, rtt avg 2.00ms (min 1.00ms, max 3.00ms)"),
        # 1 of 3 lost is 33%, within the default 50%: passes, and the loss is observed.
        (IcmpSpec("gw", count=3), [1 * MS, 3 * MS], True, None, False,
         "2/3 replies from gw, rtt avg 2.00ms (min 1.00ms, max 3.00ms)"),
        (IcmpSpec("gw", count=3), [1 * MS], False, ErrorKind.ASSERTION, False,
         "2 of 3 echo requests to gw lost (67% > max_loss 50%)"),
        (IcmpSpec("gw", count=4, max_loss=0), [1 * MS] * 3, False, ErrorKind.ASSERTION, False,
         "1 of 4 echo requests to gw lost (25% > max_loss 0%)"),
        (IcmpSpec("gw", count=4, max_loss=100), [1 * MS], True, None, False,
         "1/4 replies from gw, rtt avg 1.00ms (min 1.00ms, max 1.00ms)"),
        (IcmpSpec("gw", count=3, wait=0.5), [], False, ErrorKind.CONNECT, False,
         "no reply from gw (3 of 3 echo requests unanswered within 500ms)"),
        (IcmpSpec("gw", count=3, max_loss=100), [], False, ErrorKind.CONNECT, False,
         "no reply from gw (3 of 3 echo requests unanswered within 1s)"),
        (IcmpSpec("gw", count=2, max_rtt=0.1), [0.05, 0.2], True, None, True,
         "2/2 replies from gw, rtt avg 125.00ms (min 50.00ms, max 200.00ms); "
         "slow: avg above max_rtt 100ms"),
        (IcmpSpec("gw", count=2, max_rtt=0.1), [0.05, 0.15], True, None,
         False, "2/2 replies from gw, rtt avg 100.00ms (min 50.00ms, max 150.00ms)"),
    ],
)
def test_assess(spec: IcmpSpec, rtts: list[float], ok: bool, kind: ErrorKind | None,
                degraded: bool, reason: str) -> None:
    result = assess(spec, rtts, 0.01)
    assert (result.ok, result.error_kind, result.degraded, result.reason) == (
        ok, kind, degraded, reason)
    assert result.observations["replies"] == len(rtts)
    assert result.observations["loss_ratio"] == pytest.approx(1 - len(rtts) / spec.count)
    assert ("rtt_avg_s" in result.observations) == bool(rtts)


def test_echo_packets() -> None:
    request = icmp.echo_request(socket.AF_INET, 0x1234, 7, b"token")
    assert request[:1] == b"\x08" and icmp.checksum(request) == 0  # a valid checksum sums to 0
    reply = b"\x00" + request[1:]
    assert icmp.echo_reply(reply, socket.AF_INET) == (7, b"token")
    ip_header = bytes([0x45]) + bytes(19)  # raw IPv4 sockets hand over the IP header
    assert icmp.echo_reply(ip_header + reply, socket.AF_INET) == (7, b"token")
    assert icmp.echo_reply(request, socket.AF_INET) is None  # our own request on loopback
    assert icmp.echo_reply(b"\x81\x00\x00\x00\x12\x34\x00\x09xy", socket.AF_INET6) == (9, b"xy")
    assert icmp.echo_reply(b"\x81\x00", socket.AF_INET6) is None


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any]) -> tuple[IcmpSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[1]", errors, Path("."))
    spec = icmp.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_every_key() -> None:
    spec, errors = parse({"host": "router.lan", "ip_version": 6, "count": 5, "wait": "2s",
                          "max_loss": "20%", "max_rtt": "150ms"})
    assert errors == []
    assert spec == IcmpSpec("router.lan", 6, 5, 2.0, 20.0, 0.15)
    assert parse({"host": "::1"}) == (IcmpSpec("::1"), [])
    assert parse({"host": "gw", "max_loss": 0})[0].max_loss == 0
    assert icmp.target(spec) == "router.lan"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({}, "checks[1]: host: is required"),
        ({"host": "gw", "ip_version": "4"}, 'checks[1]: ip_version: must be 4 or 6, got "4"'),
        ({"host": "gw", "ip_version": True}, "checks[1]: ip_version: must be 4 or 6, got true"),
        ({"host": "gw", "count": 0}, "checks[1]: count: must be between 1 and 20, got 0"),
        ({"host": "gw", "count": 100}, "checks[1]: count: must be between 1 and 20, got 100"),
        ({"host": "gw", "wait": 1}, 'checks[1]: wait: must be a duration like "10s", got 1'),
        ({"host": "gw", "max_loss": 150},
         'checks[1]: max_loss: must be a percentage from 0 to 100, like 20 or "20%", got 150'),
        ({"host": "gw", "max_loss": "lots"}, "checks[1]: max_loss: must be a percentage"),
        ({"host": "gw", "max_rtt": "fast"}, "checks[1]: max_rtt: must be a duration"),
        ({"host": "gw", "interval_ms": 5}, 'checks[1]: unknown key "interval_ms"'),
    ],
)
def test_parse_errors(raw: dict[str, Any], error: str) -> None:
    _, errors = parse(raw)
    assert len(errors) == 1 and errors[0].startswith(error), errors
