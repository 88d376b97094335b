"""The dns probe against a real local DNS responder on 127.0.0.1 port 0.

The responder is a small asyncio UDP server (plus, where a test needs it, a TCP one on the
same port) that answers with messages built by dnspython. Every probe runs under
`run_with_deadline`, as the scheduler runs it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import psutil
import pytest

from agent.fields import Section
from checks import dns as dnscheck
from checks.base import ProbeContext, run_with_deadline
from checks.dns import DnsSpec, fingerprint
from checks.result import CheckResult, ErrorKind
from tests.support import free_port, no_leaks

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

#: What a responder does with a query: the reply's bytes, or None to stay silent.
Answer = Callable[[dns.message.Message], bytes | None]
Record = tuple[str, int, str, str]  # name, ttl, type, data


def reply(query: dns.message.Message, *records: Record, rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
          truncated: bool = False) -> bytes:
    msg = dns.message.make_response(query)
    msg.set_rcode(rcode)
    for name, ttl, rtype, text in records:
        rdtype = dns.rdatatype.from_text(rtype)
        rrset = msg.find_rrset(msg.answer, dns.name.from_text(name), dns.rdataclass.IN, rdtype,
                               create=True)
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), ttl)
    if truncated:
        msg.flags |= dns.flags.TC
    return msg.to_wire()


def zone(*records: Record) -> Answer:
    """Answers every query with these records (the probe picks what answers its question)."""
    return lambda q: reply(q, *records)


class Udp(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.queries: list[dns.message.Message] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        self.queries.append(query)
        out = self.answer(query)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


class Server:
    def __init__(self) -> None:
        self.transports: list[asyncio.BaseTransport] = []
        self.tcp_servers: list[asyncio.Server] = []
        self.tcp_queries = 0

    async def start(self, answer: Answer, tcp: Answer | None = None, host: str = "127.0.0.1",
                    tcp_cut: int | None = None) -> tuple[Udp, int]:
        """UDP (and, with `tcp`, TCP on the same port number) on `host`; returns the port.
        With `tcp_cut`, TCP sends only that many bytes of its framed reply, then hangs up."""
        loop = asyncio.get_running_loop()
        for _ in range(20):  # the UDP port may be taken for TCP: bounded retries
            transport, proto = await loop.create_datagram_endpoint(
                lambda: Udp(answer), local_addr=(host, 0))
            port = int(transport.get_extra_info("sockname")[1])
            if tcp is None:
                self.transports.append(transport)
                return proto, port
            try:
                server = await asyncio.start_server(self._tcp(tcp, tcp_cut), host, port)
            except OSError:
                transport.close()
                continue
            self.transports.append(transport)
            self.tcp_servers.append(server)
            return proto, port
        raise AssertionError("no port free for both UDP and TCP")

    def _tcp(self, answer: Answer, cut: int | None
             ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                query = dns.message.from_wire(await reader.readexactly(size))
                self.tcp_queries += 1
                out = answer(query)
                if out is not None:
                    writer.write((struct.pack("!H", len(out)) + out)[:cut])
                    await writer.drain()
                if cut is None:
                    await reader.read()  # until the probe hangs up
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        return handle

    async def close(self) -> None:
        for t in self.transports:
            t.close()
        for s in self.tcp_servers:
            s.close()
            await s.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    yield s
    await s.close()


async def check(spec: DnsSpec, ctx: ProbeContext, timeout: float = 10.0) -> CheckResult:
    return await run_with_deadline(dnscheck.probe, spec, ctx, timeout)


def at(port: int, name: str = "shop.example.com", rtype: str = "A", **kw: Any) -> DnsSpec:
    return DnsSpec(name, rtype, ("127.0.0.1", port), **kw)


SHOP = zone(("shop.example.com", 300, "A", "192.0.2.2"), ("shop.example.com", 300, "A",
                                                          "192.0.2.1"))


# --- answers ------------------------------------------------------------------------------


async def test_resolves(server: Server, ctx: ProbeContext) -> None:
    udp, port = await server.start(SHOP)
    result = await check(at(port), ctx)
    assert result.ok, result.reason
    assert result.reason == "shop.example.com A -> 192.0.2.1, 192.0.2.2"
    assert result.observations == {"answers": 2, "ttl_min": 300,
                                   "answer_fingerprint": fingerprint(["192.0.2.1", "192.0.2.2"])}
    assert result.latency_s > 0
    assert udp.queries[0].question[0].name == dns.name.from_text("shop.example.com")


async def test_expected_set_in_any_order(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(SHOP)
    result = await check(at(port, expect=frozenset({"192.0.2.2", "192.0.2.1"})), ctx)
    assert result.ok, result.reason


async def test_expected_set_mismatch(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(SHOP)
    result = await check(at(port, expect=frozenset({"192.0.2.1", "192.0.2.9"})), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == ("shop.example.com A answered 192.0.2.1, 192.0.2.2, expected "
                             "192.0.2.1, 192.0.2.9 (missing 192.0.2.9; unexpected 192.0.2.2)")
    # The answer is still observed: a changed record is visible to detection.
    assert result.observations["answers"] == 2
    assert result.observations["answer_fingerprint"] == fingerprint(["192.0.2.1", "192.0.2.2"])


async def test_expect_contains(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(zone(
        ("example.com", 60, "TXT", '"v=spf1 mx -all"'),
        ("example.com", 60, "TXT", '"google-site-verification=" "abc"')))
    ok = await check(at(port, "example.com", "TXT",
                        expect_contains=frozenset({"google-site-verification=abc"})), ctx)
    assert ok.ok, ok.reason
    bad = await check(at(port, "example.com", "TXT",
                         expect_contains=frozenset({"v=spf1 -all"})), ctx)
    assert bad.error_kind is ErrorKind.ASSERTION
    assert bad.reason == ("example.com TXT answered google-site-verification=abc, v=spf1 mx -all"
                          ", without v=spf1 -all")


async def test_cname_chain_and_names_compared_as_dig_prints_them(server: Server,
                                                                 ctx: ProbeContext) -> None:
    _, port = await server.start(zone(("mail.example.com", 60, "CNAME", "mx1.example.net."),
                                      ("mx1.example.net", 900, "MX", "10 MX1.Example.NET.")))
    spec, errors = parse({"query_name": "mail.example.com", "query_type": "MX",
                          "resolver": f"127.0.0.1:{port}", "expect": ["10 mx1.example.net"]})
    assert errors == []
    result = await check(spec, ctx)
    assert result.ok, result.reason
    assert result.reason == "mail.example.com MX -> 10 mx1.example.net."
    assert result.observations["ttl_min"] == 60  # the chain is cached no longer than its link


async def test_nxdomain_is_an_assertion(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(lambda q: reply(q, rcode=dns.rcode.NXDOMAIN))
    result = await check(at(port, "gone.example.com"), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == f"gone.example.com does not exist (NXDOMAIN from 127.0.0.1:{port})"


async def test_no_record_of_the_type(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(SHOP)
    result = await check(at(port, rtype="AAAA"), ctx)
    assert result.error_kind is ErrorKind.ASSERTION
    assert result.reason == (f"shop.example.com has no AAAA record "
                             f"(NODATA from 127.0.0.1:{port})")


@pytest.mark.parametrize(("rcode", "said"), [
    (dns.rcode.SERVFAIL, "could not resolve shop.example.com A (SERVFAIL)"),
    (dns.rcode.REFUSED, "refused to resolve shop.example.com A (REFUSED)"),
    (dns.rcode.NOTIMP, "answered an error for shop.example.com A (NOTIMP)"),
])
async def test_resolver_errors_are_dns(server: Server, ctx: ProbeContext, rcode: dns.rcode.Rcode,
                                       said: str) -> None:
    _, port = await server.start(lambda q: reply(q, rcode=rcode))
    result = await check(at(port), ctx)
    assert result.error_kind is ErrorKind.DNS
    assert result.reason == f"127.0.0.1:{port} {said}"


# --- broken resolvers ---------------------------------------------------------------------


async def test_no_response_is_a_timeout(server: Server, ctx: ProbeContext) -> None:
    udp, port = await server.start(lambda q: None)
    result = await check(at(port), ctx, timeout=0.3)
    assert result.error_kind is ErrorKind.TIMEOUT
    assert len(udp.queries) == 1  # asked once: no retries of its own


async def test_closed_port_is_refused(ctx: ProbeContext) -> None:
    port = free_port(kind=socket.SOCK_DGRAM)
    result = await check(at(port), ctx)
    assert result.error_kind is ErrorKind.CONNECT
    assert result.reason == (f"127.0.0.1:{port} refused the query (nothing listens on its "
                             "UDP port)")


async def test_garbage_reply(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(lambda q: b"\x00\x01garbage")
    result = await check(at(port), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason.startswith(f"127.0.0.1:{port} sent 9 bytes that are not a DNS reply (")
    assert result.reason.endswith("it began b'\\x00\\x01garbage')")


async def test_reply_to_another_query(server: Server, ctx: ProbeContext) -> None:
    def wrong_id(q: dns.message.Message) -> bytes:
        q.id ^= 0xFFFF
        return reply(q, ("shop.example.com", 300, "A", "192.0.2.1"))

    _, port = await server.start(wrong_id)
    result = await check(at(port), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == (f"127.0.0.1:{port} sent a reply that does not answer our query "
                             "(id or question differ)")


async def test_truncated_reply_is_asked_again_over_tcp(server: Server, ctx: ProbeContext
                                                       ) -> None:
    udp, port = await server.start(lambda q: reply(q, truncated=True), tcp=SHOP)
    result = await check(at(port), ctx)
    assert result.ok, result.reason
    assert result.observations["answers"] == 2
    assert (len(udp.queries), server.tcp_queries) == (1, 1)


async def test_truncated_reply_without_tcp(server: Server, ctx: ProbeContext) -> None:
    # TCP on the UDP responder's port number: taken by nobody (checked by connecting).
    _, port = await server.start(lambda q: reply(q, truncated=True))
    result = await check(at(port), ctx)
    if result.error_kind is not ErrorKind.CONNECT:  # pragma: no cover - port taken for TCP
        pytest.skip("another process listens on that TCP port")
    assert result.reason == (f"the UDP reply was truncated and 127.0.0.1:{port} refused "
                             "the TCP connection")


async def test_truncated_even_over_tcp(server: Server, ctx: ProbeContext) -> None:
    truncated: Answer = lambda q: reply(q, truncated=True)  # noqa: E731
    _, port = await server.start(truncated, tcp=truncated)
    result = await check(at(port), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == f"127.0.0.1:{port} sent a truncated reply even over TCP"


async def test_garbage_over_tcp(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(lambda q: reply(q, truncated=True), tcp=lambda q: b"junk")
    result = await check(at(port), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason.startswith(f"127.0.0.1:{port} sent 4 bytes over TCP that are not a "
                                    "DNS reply (")


async def test_tcp_hangs_up_midway(server: Server, ctx: ProbeContext) -> None:
    _, port = await server.start(lambda q: reply(q, truncated=True), tcp=SHOP, tcp_cut=20)
    result = await check(at(port), ctx)
    assert result.error_kind is ErrorKind.PROTOCOL
    assert result.reason == (f"the UDP reply was truncated and 127.0.0.1:{port} closed the TCP "
                             "connection before a whole reply")


async def test_ipv6_resolver(server: Server, ctx: ProbeContext) -> None:
    if not socket.has_ipv6:  # pragma: no cover
        pytest.skip("no IPv6")
    try:
        _, port = await server.start(SHOP, host="::1")
    except OSError:  # pragma: no cover - IPv6 disabled on loopback
        pytest.skip("::1 not available")
    spec, errors = parse({"query_name": "shop.example.com", "resolver": f"[::1]:{port}"})
    assert parse({"query_name": "x", "resolver": "[::1]"})[0].resolver == ("::1", 53)
    assert errors == []
    result = await check(spec, ctx)
    assert result.ok, result.reason
    assert dnscheck.target(spec) == f"shop.example.com A @[::1]:{port}"


async def test_no_leaked_sockets(server: Server, ctx: ProbeContext) -> None:
    _, ok = await server.start(SHOP)
    _, silent = await server.start(lambda q: None)
    _, garbage = await server.start(lambda q: b"junk")
    _, tc = await server.start(lambda q: reply(q, truncated=True), tcp=SHOP)
    me = psutil.Process()
    fds_before = me.num_fds()
    kinds = []
    for _ in range(5):
        for spec, timeout in [(at(ok), 10.0), (at(silent), 0.05), (at(garbage), 10.0),
                              (at(tc), 10.0), (at(free_port(kind=socket.SOCK_DGRAM)), 10.0)]:
            kinds.append((await check(spec, ctx, timeout)).error_kind)
    assert kinds[:5] == [None, ErrorKind.TIMEOUT, ErrorKind.PROTOCOL, None, ErrorKind.CONNECT]
    await no_leaks([], fds_before)  # closing is scheduled by the loop: give it turns


# --- the system resolver, fingerprints ----------------------------------------------------


def test_system_resolver_is_the_first_nameserver() -> None:
    text = ("# comment\nsearch example.com\nnameserver not-an-ip\nnameserver ::1\n"
            "nameserver 10.0.0.1\n")
    assert dnscheck.system_resolver(text) == "::1"
    assert dnscheck.system_resolver("search example.com\n") is None


async def test_no_resolv_conf(tmp_path: Path, ctx: ProbeContext) -> None:
    missing = tmp_path / "resolv.conf"
    result = await check(DnsSpec("shop.example.com", resolv_conf=str(missing)), ctx)
    assert result.error_kind is ErrorKind.DNS
    assert result.reason == (f"cannot read {missing}: No such file or directory; "
                             "set `resolver` in the check")
    missing.write_text("search example.com\n")
    result = await check(DnsSpec("shop.example.com", resolv_conf=str(missing)), ctx)
    assert result.reason == f"no nameserver in {missing}; set `resolver` in the check"


def test_fingerprint_is_an_exact_52_bit_float_of_the_set() -> None:
    a = fingerprint(["192.0.2.1", "192.0.2.2"])
    assert a == fingerprint(["192.0.2.2", "192.0.2.1", "192.0.2.1"])
    assert a != fingerprint(["192.0.2.1", "192.0.2.3"])
    assert a == int(a) and 0 <= a < 2**52


# --- config -------------------------------------------------------------------------------


def parse(raw: dict[str, Any]) -> tuple[DnsSpec, list[str]]:
    errors: list[str] = []
    sec = Section(raw, "checks[1]", errors, Path("."))
    spec = dnscheck.parse(sec)
    sec.finish()
    return spec, errors


def test_parse_every_key() -> None:
    spec, errors = parse({"query_name": "example.com", "query_type": "CAA",
                          "resolver": "192.0.2.53", "expect": ['0 issue "letsencrypt.org"']})
    assert errors == []
    assert spec == DnsSpec("example.com", "CAA", ("192.0.2.53", 53),
                           frozenset({'0 issue "letsencrypt.org"'}))
    assert dnscheck.target(spec) == "example.com CAA @192.0.2.53:53"


def test_parse_defaults_and_ptr() -> None:
    spec, errors = parse({"query_name": "192.0.2.7", "query_type": "PTR",
                          "expect_contains": "Host.Example.com"})
    assert errors == []
    assert spec == DnsSpec("7.2.0.192.in-addr.arpa.", "PTR", None, None,
                           frozenset({"host.example.com."}))
    assert dnscheck.target(spec) == "7.2.0.192.in-addr.arpa. PTR @system resolver"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({}, "checks[1]: query_name: is required"),
        ({"query_name": "a..b"}, "checks[1]: query_name: not a valid domain name"),
        ({"query_name": "x", "query_type": "ANY"},
         "checks[1]: query_type: must be one of A, AAAA, CNAME, MX, TXT, NS, SOA, SRV, PTR, "
         'CAA; got "ANY"'),
        ({"query_name": "x", "resolver": "dns.example.com:53"},
         "checks[1]: resolver: must be an IP address, optionally with a port"),
        ({"query_name": "x", "resolver": "localhost"},
         "checks[1]: resolver: must be an IP address, optionally with a port"),
        ({"query_name": "x", "resolver": "127.0.0.1:0"}, "checks[1]: resolver: must be"),
        ({"query_name": "x", "expect": ["192.0.2.300"]},
         'checks[1]: expect[0]: not a valid A record: "192.0.2.300"'),
        ({"query_name": "x", "query_type": "MX", "expect_contains": ["mail.example.com"]},
         'checks[1]: expect_contains[0]: not a valid MX record: "mail.example.com"'),
        ({"query_name": "x", "expect": []}, "checks[1]: expect: must list at least one answer"),
        ({"query_name": "x", "expect": ["192.0.2.1"], "expect_contains": ["192.0.2.1"]},
         "checks[1]: expect: give either expect or expect_contains, not both"),
        ({"query_name": "x", "expect": 7}, "checks[1]: expect: must be a list of strings"),
        ({"query_name": "x", "timeoutt": "1s"}, 'checks[1]: unknown key "timeoutt"'),
    ],
)
def test_parse_errors(raw: dict[str, Any], error: str) -> None:
    _, errors = parse(raw)
    assert len(errors) == 1 and errors[0].startswith(error), errors
