"""The kind registry: one table, keyed by the config's `type`, of every check kind.

Each kind supplies: `parse(section) -> Spec` (validates its own keys at load,
unknown keys are errors), `probe(spec, ctx) -> CheckResult`, and
`target(spec) -> str` (what a person reads in a message: the URL, host:port).

Importing this module imports every kind, and with them their libraries
(aiohttp, dnspython, psutil, ...): the shell (config, scheduler, runner, CLI)
imports it; pure modules never do, they use checks/result.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.fields import Section
from checks import dns, heartbeat, host, http, icmp, imap, mailflow, pop3, smtp, tcp, tls
from checks.base import Probe


@dataclass(frozen=True)
class Kind:
    parse: Callable[[Section], Any]
    probe: Probe
    target: Callable[[Any], str]


KINDS: dict[str, Kind] = {
    "http": Kind(http.parse, http.probe, http.target),
    "tcp": Kind(tcp.parse, tcp.probe, tcp.target),
    "tls": Kind(tls.parse, tls.probe, tls.target),
    "smtp": Kind(smtp.parse, smtp.probe, smtp.target),
    "imap": Kind(imap.parse, imap.probe, imap.target),
    "pop3": Kind(pop3.parse, pop3.probe, pop3.target),
    "mailflow": Kind(mailflow.parse, mailflow.probe, mailflow.target),
    "dns": Kind(dns.parse, dns.probe, dns.target),
    "icmp": Kind(icmp.parse, icmp.probe, icmp.target),
    "heartbeat": Kind(heartbeat.parse, heartbeat.probe, heartbeat.target),
    "host": Kind(host.parse, host.probe, host.target),
}
