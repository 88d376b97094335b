"""Several hosts on one machine: network namespaces joined by veth pairs (iproute2).

`Hosts` makes namespaces and point-to-point links between them, each a /30 of
10.77.0.0/16, and gives every namespace one address of its own on its
loopback ("the host's address"), routed over the links. Nothing touches the
machine's own interfaces: the test talks to the hosts over a link from the
root namespace to one of them. Everything is removed on `close()`.

Needs root and `ip`; `available()` says why not otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass, field

import pytest


def available() -> str | None:
    """None when namespaces can be made here; else why not (for a skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    return None


def require() -> None:
    """Skip the test where namespaces cannot be made; under CI (`CI=true`, root) fail it."""
    why = available()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; under CI the namespace tests never skip (.ci/run runs as root "
                    "and installs iproute2)")
    pytest.skip(why)


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


@dataclass
class Link:
    a: str
    b: str
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str


@dataclass
class Hosts:
    prefix: str = field(default_factory=lambda: f"ow{os.getpid() % 100000}")
    names: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    #: namespace -> its own address (on its loopback); "" is the root namespace.
    address: dict[str, str] = field(default_factory=dict)
    _next: int = 0

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def add(self, name: str) -> str:
        ns = self.ns(name)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        ip("netns", "add", ns)
        self.names.append(name)
        ip("link", "set", "lo", "up", ns=ns)
        addr = f"10.77.{200 + len(self.names)}.1"
        ip("addr", "add", f"{addr}/32", "dev", "lo", ns=ns)
        self.address[name] = addr
        return ns

    def link(self, a: str, b: str) -> Link:
        """A veth pair between hosts a and b ("" for the root namespace), each reaching
        the other's own address over it."""
        self._next += 1
        net = ipaddress.ip_network(f"10.77.{self._next}.0/30")
        ha, hb = (str(h) for h in list(net.hosts())[:2])
        dev_a, dev_b = f"{self.prefix}{self._next}a", f"{self.prefix}{self._next}b"
        ip("link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
        for name, dev, addr in ((a, dev_a, ha), (b, dev_b, hb)):
            if name:
                ip("link", "set", dev, "netns", self.ns(name))
            ns = self.ns(name) if name else None
            ip("addr", "add", f"{addr}/30", "dev", dev, ns=ns)
            ip("link", "set", dev, "up", ns=ns)
        link = Link(a, b, dev_a, dev_b, ha, hb)
        self.links.append(link)
        if b in self.address:
            ip("route", "add", self.address[b], "via", hb, ns=self.ns(a) if a else None)
        if a in self.address:
            ip("route", "add", self.address[a], "via", ha, ns=self.ns(b) if b else None)
        return link

    def cut(self, link: Link, up: bool = False) -> None:
        """Take a link down (or up again): both ends, as a pulled cable."""
        for name, dev in ((link.a, link.dev_a), (link.b, link.dev_b)):
            ip("link", "set", dev, "up" if up else "down", ns=self.ns(name) if name else None)
        if up:  # routes over a link are removed with it
            if link.b in self.address:
                _quiet_route(self.address[link.b], link.addr_b, link.a and self.ns(link.a))
            if link.a in self.address:
                _quiet_route(self.address[link.a], link.addr_a, link.b and self.ns(link.b))

    def close(self) -> None:
        for link in self.links:
            if not link.a:  # the root end of a root link; the rest go with their ns
                subprocess.run(["ip", "link", "del", link.dev_a], capture_output=True,
                               timeout=10)
        for name in self.names:
            subprocess.run(["ip", "netns", "del", self.ns(name)], capture_output=True,
                           timeout=10)


def _quiet_route(dest: str, via: str, ns: str | None) -> None:
    cmd = ["ip", "route", "replace", dest, "via", via]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    subprocess.run(cmd, capture_output=True, timeout=10)
