"""The check kinds, one module each, registered in one table keyed by the config's `type`.

Each kind supplies: `parse(section) -> Spec` (validates its own keys at load,
unknown keys are errors), `probe(spec, ctx) -> CheckResult`, and
`target(spec) -> str` (what a person reads in a message: the URL, host:port).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.fields import Section
from checks import http, tcp
from checks.base import CheckResult, ErrorKind, Probe, ProbeContext


@dataclass(frozen=True)
class Kind:
    parse: Callable[[Section], Any]
    probe: Probe
    target: Callable[[Any], str]


KINDS: dict[str, Kind] = {
    "http": Kind(http.parse, http.probe, http.target),
    "tcp": Kind(tcp.parse, tcp.probe, tcp.target),
}

__all__ = ["KINDS", "CheckResult", "ErrorKind", "Kind", "Probe", "ProbeContext"]
