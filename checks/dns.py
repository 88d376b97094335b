"""DNS probe: one query to one resolver; the record must resolve, and may have to match.

Config keys:
  query_name       the name to look up; always taken as absolute (no search domains).
                   With query_type = "PTR" an IP address is turned into its reverse name.
  query_type       A, AAAA, CNAME, MX, TXT, NS, SOA, SRV, PTR or CAA (default "A")
  resolver         "127.0.0.1:5353", "[::1]:53", or an address alone for port 53.
                   Default: the first `nameserver` of /etc/resolv.conf, read at every run.
  expect           the exact set of answers, in any order (default: any answer will do)
  expect_contains  answers that must be among the answers (not together with `expect`)

Answers are compared as `dig +short` prints them, names absolute and case-insensitive:
`expect = ["10 mail.example.com"]` matches an MX answer `10 Mail.Example.COM.`. A TXT
answer is its strings joined, without quotes (`"v=spf1 -all"`). Expected values are
validated at load against the record type.

Contract (see checks/base.py): one query over UDP to one resolver; a reply with the TC bit
set is asked again over TCP, as every stub resolver does. Nothing else is retried and no
other nameserver is tried: the scheduler owns the deadline, and a second resolver would
hide a broken first one (monitor each resolver with its own check). That is also why
this kind does not use dnspython's Resolver, which waits out garbage replies, sleeps
between attempts and keeps a lifetime of its own; dnspython builds and parses the
messages. The UDP socket is connected, so a closed port answers "refused" at once
instead of a timeout. Every socket is closed on every exit, cancellation included.

Failure classification:
  connect    the resolver refused (ICMP port unreachable over UDP, RST over TCP) or is
             unreachable
  dns        the resolver answered SERVFAIL, REFUSED or another error code; no nameserver
             in /etc/resolv.conf
  protocol   the reply is not DNS, does not answer our query, or is truncated over TCP
  assertion  the resolver did its job and the answer is not what the check wants:
             NXDOMAIN (the name does not exist), no record of the type (NODATA), or a
             mismatch with `expect` / `expect_contains`. NXDOMAIN is an assertion, not
             `dns`, on purpose: `dns` says "the resolver is broken", an assertion says
             "the record is gone or changed" — different people fix them.
(timeout is the scheduler's, see `run_with_deadline`.)

Observations: answers (count), ttl_min (the smallest TTL along the CNAME chain) and
answer_fingerprint — the first 52 bits of the SHA-256 of the sorted answer set, as an
exact float — so detection can notice a record that changed without an `expect`.
They are recorded on a mismatch with `expect` too (not on NXDOMAIN / NODATA).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename

from agent.fields import Section, show, split_host_port
from checks._net import Failed, hostport
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

TYPES: Final = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "PTR", "CAA")
#: Types whose answers hold names: compared case-insensitively.
_NAMED: Final = frozenset({"CNAME", "MX", "NS", "SOA", "SRV", "PTR"})
RESOLV_CONF: Final = "/etc/resolv.conf"
MAX_CNAMES: Final = 16  # a longer chain in one answer is a loop or an attack
MAX_TCP_REPLY: Final = 65535  # the length prefix is 16 bits: bounded by the protocol
_SHOWN: Final = 5  # answers quoted in a reason


@dataclass(frozen=True, slots=True)
class DnsSpec:
    query_name: str
    query_type: str = "A"
    resolver: tuple[str, int] | None = None
    expect: frozenset[str] | None = None
    expect_contains: frozenset[str] = frozenset()
    #: Not a config key: where the system resolver is read from (tests point it elsewhere).
    resolv_conf: str = field(default=RESOLV_CONF, compare=False)


def parse(sec: Section) -> DnsSpec:
    name = sec.string("query_name")
    rdtype = sec.choice("query_type", TYPES, "A")
    if name and rdtype == "PTR":
        with contextlib.suppress(ValueError):
            name = dns.reversename.from_address(name).to_text()
    if name:
        try:
            dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            sec.error("query_name", f"not a valid domain name ({exc})")
    resolver = None
    if sec.has("resolver"):
        text = sec.string("resolver")
        resolver = parse_resolver(text)
        if resolver is None and text.strip():
            sec.error("resolver", f'must be an IP address, optionally with a port, like '
                                  f'"127.0.0.1:53" or "[::1]:53"; got {show(text)}')
    if sec.has("expect") and sec.has("expect_contains"):
        sec.error("expect", "give either expect or expect_contains, not both")
    expect = _expected(sec, "expect", rdtype) if sec.has("expect") else None
    contains = _expected(sec, "expect_contains", rdtype) or frozenset()
    if sec.raw.get("expect") == []:
        sec.error("expect", "must list at least one answer")
    return DnsSpec(name, rdtype, resolver, expect, contains)


def parse_resolver(text: str) -> tuple[str, int] | None:
    """'192.0.2.53', '[::1]' -> (address, 53); '127.0.0.1:5353', '[::1]:53' -> (address, port);
    None when it is not an IP address (an unbracketed IPv6 address has no port)."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))), 53
    hp = split_host_port(text)
    if hp is None or hp[1] == 0:
        return None
    try:
        return str(ipaddress.ip_address(hp[0])), hp[1]
    except ValueError:
        return None  # a resolver given by name would need a resolver to find it


def _expected(sec: Section, key: str, rdtype: str) -> frozenset[str] | None:
    values = sec.string_list(key)
    out: set[str] = set()
    for i, value in enumerate(values):
        if rdtype == "TXT":
            out.add(value)
            continue
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, dns.name.root,
                                        relativize=False)
        except (dns.exception.DNSException, ValueError) as exc:
            sec.error(f"{key}[{i}]", f"not a valid {rdtype} record: {show(value)} ({exc})")
            continue
        out.add(answer_text(rdata, rdtype))
    return frozenset(out)


def system_resolver(text: str) -> str | None:
    """The first usable `nameserver` line of a resolv.conf, as glibc asks first."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(words[1]))
    return None


def target(spec: DnsSpec) -> str:
    where = hostport(*spec.resolver) if spec.resolver else "system resolver"
    return f"{spec.query_name} {spec.query_type} @{where}"


def answer_text(rdata: Any, rdtype: str) -> str:
    """One answer as it is compared and shown."""
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")
    text = str(rdata.to_text())
    return text.lower() if rdtype in _NAMED else text


def fingerprint(answers: Iterable[str]) -> float:
    """The first 52 bits of SHA-256 over the sorted answers: exact as a float, and equal
    for equal sets whatever order the resolver used."""
    digest = hashlib.sha256("\n".join(sorted(set(answers))).encode()).digest()
    return float(int.from_bytes(digest[:8], "big") >> 12)


async def probe(spec: DnsSpec, ctx: ProbeContext) -> CheckResult:
    """One question, one resolver; see the module docstring for the classification."""
    started = time.perf_counter()
    observations: dict[str, float] = {}
    try:
        server = spec.resolver or _read_system_resolver(spec.resolv_conf)
        # EDNS with a 1232-byte payload (the DNS flag day size): fewer answers need TCP.
        query = dns.message.make_query(dns.name.from_text(spec.query_name), spec.query_type,
                                       use_edns=0, payload=1232)
        reply = await _ask(query, server)
        answers, ttl = _answers(reply, spec, server)
        observations = {"answers": float(len(answers)), "answer_fingerprint": fingerprint(answers)}
        if ttl is not None:
            observations["ttl_min"] = float(ttl)
        reason = _verdict(spec, answers)
        return CheckResult.success(time.perf_counter() - started, reason, observations)
    except Failed as failed:
        return failed.result(started, observations)


def _read_system_resolver(path: str) -> tuple[str, int]:
    try:
        # Small and local: read at every run, as glibc re-reads it, so an edit takes effect.
        found = system_resolver(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise Failed(ErrorKind.DNS, f"cannot read {path}: {exc.strerror or exc}; "
                                    f"set `resolver` in the check") from None
    if found is None:
        raise Failed(ErrorKind.DNS, f"no nameserver in {path}; set `resolver` in the check")
    return found, 53


async def _ask(query: dns.message.Message, server: tuple[str, int]) -> dns.message.Message:
    where = hostport(*server)
    wire = query.to_wire()
    data = await _udp(wire, server, where)
    try:
        reply = dns.message.from_wire(data, raise_on_truncation=True)
    except dns.message.Truncated:
        data = await _tcp(wire, server, where)
        reply = _decode(data, where, "over TCP")
        if reply.flags & dns.flags.TC:
            raise Failed(ErrorKind.PROTOCOL, f"{where} sent a truncated reply even over TCP"
                         ) from None
    except Exception as exc:  # from_wire raises many kinds for many kinds of garbage
        raise Failed(ErrorKind.PROTOCOL, _not_dns(where, data, exc)) from None
    if not query.is_response(reply):
        raise Failed(ErrorKind.PROTOCOL, f"{where} sent a reply that does not answer our query "
                                         f"(id or question differ)")
    return reply


def _decode(data: bytes, where: str, how: str) -> dns.message.Message:
    try:
        return dns.message.from_wire(data)
    except Exception as exc:
        raise Failed(ErrorKind.PROTOCOL, _not_dns(where, data, exc, f" {how}")) from None


def _not_dns(where: str, data: bytes, exc: Exception, how: str = "") -> str:
    return (f"{where} sent {len(data)} bytes{how} that are not a DNS reply "
            f"({type(exc).__name__}; it began {data[:16]!r})")


class _Datagram(asyncio.DatagramProtocol):
    """Keeps the first datagram (or socket error) of a connected UDP socket."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc or ConnectionError("the socket closed"))


async def _udp(wire: bytes, server: tuple[str, int], where: str) -> bytes:
    loop = asyncio.get_running_loop()
    transport: asyncio.DatagramTransport | None = None
    proto: _Datagram | None = None
    try:
        transport, proto = await loop.create_datagram_endpoint(_Datagram, remote_addr=server)
        transport.sendto(wire)
        return await proto.reply
    except ConnectionRefusedError:
        raise Failed(ErrorKind.CONNECT, f"{where} refused the query (nothing listens on "
                                        f"its UDP port)") from None
    except OSError as exc:
        raise Failed(ErrorKind.CONNECT, f"cannot reach {where}: {exc.strerror or exc}") from None
    finally:
        if proto is not None and not proto.reply.done():
            proto.reply.cancel()  # so that closing does not leave an unretrieved error
        if transport is not None:
            transport.close()


async def _tcp(wire: bytes, server: tuple[str, int], where: str) -> bytes:
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(*server)
        writer.write(struct.pack("!H", len(wire)) + wire)
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        return await reader.readexactly(min(size, MAX_TCP_REPLY))
    except asyncio.IncompleteReadError:
        raise Failed(ErrorKind.PROTOCOL, f"the UDP reply was truncated and {where} closed the "
                                         f"TCP connection before a whole reply") from None
    except ConnectionRefusedError:
        raise Failed(ErrorKind.CONNECT, f"the UDP reply was truncated and {where} refused "
                                        f"the TCP connection") from None
    except OSError as exc:
        raise Failed(ErrorKind.CONNECT, f"the UDP reply was truncated and TCP to {where} "
                                        f"failed: {exc.strerror or exc}") from None
    finally:
        if writer is not None:
            writer.transport.abort()  # nothing more to say; never wait on a close


def _answers(reply: dns.message.Message, spec: DnsSpec, server: tuple[str, int]
             ) -> tuple[list[str], int | None]:
    """The answers for the question, following CNAMEs within the reply; raises for errors."""
    where, rcode = hostport(*server), reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise Failed(ErrorKind.ASSERTION, f"{spec.query_name} does not exist "
                                          f"(NXDOMAIN from {where})")
    if rcode != dns.rcode.NOERROR:
        text = dns.rcode.to_text(rcode)
        what = {"SERVFAIL": "could not resolve", "REFUSED": "refused to resolve"}.get(
            text, "answered an error for")
        raise Failed(ErrorKind.DNS, f"{where} {what} {spec.query_name} {spec.query_type} "
                                    f"({text})")
    rdtype = dns.rdatatype.from_text(spec.query_type)
    name, ttls = dns.name.from_text(spec.query_name), []
    for _ in range(MAX_CNAMES):
        rrset = reply.get_rrset(reply.answer, name, dns.rdataclass.IN, rdtype)
        if rrset is not None:
            ttls.append(rrset.ttl)
            return [answer_text(r, spec.query_type) for r in rrset], min(ttls)
        cname = reply.get_rrset(reply.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None or rdtype == dns.rdatatype.CNAME:
            break
        ttls.append(cname.ttl)
        name = cname[0].target
    raise Failed(ErrorKind.ASSERTION, f"{spec.query_name} has no {spec.query_type} record "
                                      f"(NODATA from {where})")


def _verdict(spec: DnsSpec, answers: list[str]) -> str:
    got = set(answers)
    head = f"{spec.query_name} {spec.query_type}"
    if spec.expect is not None and got != spec.expect:
        missing, extra = spec.expect - got, got - spec.expect
        parts = ([f"missing {_list(missing)}"] if missing else []) + (
            [f"unexpected {_list(extra)}"] if extra else [])
        raise Failed(ErrorKind.ASSERTION, f"{head} answered {_list(got)}, expected "
                                          f"{_list(spec.expect)} ({'; '.join(parts)})")
    missing = spec.expect_contains - got
    if missing:
        raise Failed(ErrorKind.ASSERTION, f"{head} answered {_list(got)}, without "
                                          f"{_list(missing)}")
    return f"{head} -> {_list(got)}"


def _list(items: Iterable[str]) -> str:
    """Sorted, each bounded, at most _SHOWN of them: a reason stays one readable line."""
    ordered = sorted(items)
    shown = [a if len(a) <= 60 else a[:57] + "..." for a in ordered[:_SHOWN]]
    more = f" (+{len(ordered) - _SHOWN} more)" if len(ordered) > _SHOWN else ""
    return ", ".join(shown) + more if shown else "nothing"
