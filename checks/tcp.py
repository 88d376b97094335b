"""TCP probe: connect, then run a script of sends and expects (POS terminals, gateways).

Config keys:
  host          name or address (IPv6 literals as they are, no brackets)
  port          1-65535
  steps         the script, in order; each step is a table with one key:
                  {send = "..."}          write these bytes (TOML escapes like "\r\n" work)
                  {expect = "..."}        read until these bytes arrive
                  {expect_regex = "..."}  read until this regular expression (RE2) matches
                  {starttls = true}       upgrade the connection to TLS here
  send/expect   shorthand for steps = [{send = ...}, {expect = ...}] (not with `steps`)
  max_read      how much one expect step reads at most while waiting (default "64KiB")
  tls           TLS from the first byte (default false)
  verify_tls    verify the certificate chain and name (default true)
  ca_file       trust this CA instead of the system store
  server_name   the name sent (SNI) and verified (default: host)

Contract (see checks/base.py): `probe(spec, ctx)` connects (and handshakes when `tls`),
then runs the steps in order. An expect step searches what the server sent after the
previous match; bytes after a match are kept for the next expect. It returns a
`CheckResult`, never raises for a failing target, never sleeps or retries; the
scheduler owns the deadline. The socket is closed on every exit, cancellation included.

Failure classification:
  dns        the host name does not resolve
  connect    no TCP connection (refused, unreachable, ...)
  tls        handshake failed, certificate not trusted, name mismatch
  protocol   connected, but the server hung up before sending anything while we
             waited for an expect, reset while we sent, or sent plaintext that was
             still unread when a starttls step came
  assertion  the server answered, but an expect is not in what it sent (before EOF,
             or within `max_read` bytes)
(timeout is the scheduler's, see `run_with_deadline`.) Reasons name the step
("step 3: ...") when the script is more than one send and one expect.

latency_s covers the whole exchange. Observations: bytes_read, connect_s, and with
TLS tls_s and cert_days_left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.fields import Section, show
from checks import _input
from checks._net import PLAIN, Failed, Stream, Tls, hostport, parse_tls, tls_context
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

_STEP_KEYS = ("send", "expect", "expect_regex", "starttls")


@dataclass(frozen=True, slots=True)
class Step:
    """One step; exactly one of its fields is set."""

    send: bytes = b""
    expect: bytes = b""
    regex: _input.Pattern | None = None
    starttls: bool = False

    def wanted(self) -> str:
        return f"regex {_show(self.regex.pattern)}" if self.regex else _show(self.expect)


@dataclass(frozen=True, slots=True)
class TcpSpec:
    host: str
    port: int
    steps: tuple[Step, ...] = ()
    max_read: int = 64 * 1024
    tls: Tls = PLAIN


def script(send: bytes = b"", expect: bytes = b"") -> tuple[Step, ...]:
    """The `send`/`expect` shorthand as steps."""
    return ((Step(send=send),) if send else ()) + ((Step(expect=expect),) if expect else ())


def parse(sec: Section) -> TcpSpec:
    host = _input.host(sec)
    port = sec.integer("port", low=1, high=65535)
    if sec.has("steps") and (sec.has("send") or sec.has("expect")):
        sec.error("steps", "give either steps or the send/expect shorthand, not both")
        sec.value("send"), sec.value("expect")  # reported once, here
    steps = _parse_steps(sec) if sec.has("steps") else script(
        sec.string("send", "", nonempty=False).encode(),
        sec.string("expect", "", nonempty=False).encode())
    max_read = sec.size("max_read", 64 * 1024)
    tls = parse_tls(sec)
    upgrades = any(s.starttls for s in steps)
    if tls.implicit and upgrades:
        sec.error("steps", "a starttls step needs tls = false (the connection is TLS already)")
    for key in ("ca_file", "verify_tls", "server_name"):
        if sec.has(key) and not (tls.implicit or upgrades):
            sec.error(key, "only used with tls = true or a starttls step")
    return TcpSpec(host, port, steps, max_read, tls)


def _parse_steps(sec: Section) -> tuple[Step, ...]:
    raw: Any = sec.value("steps")
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        sec.error("steps", f"must be a list of tables like {{send = \"...\"}}, got {show(raw)}")
        return ()
    steps: list[Step] = []
    for i, item in enumerate(raw, 1):
        where = f"steps[{i}]"
        keys = [k for k in item if k in _STEP_KEYS]
        if len(item) != 1 or len(keys) != 1:
            sec.error(where, f"must have exactly one of {', '.join(_STEP_KEYS)}, "
                             f"got {', '.join(map(show, item)) or 'nothing'}")
            continue
        key, value = keys[0], item[keys[0]]
        if key == "starttls":
            if value is not True:
                sec.error(where, f"starttls: must be true, got {show(value)}")
            steps.append(Step(starttls=True))
        elif not isinstance(value, str) or (not value and key != "send"):
            sec.error(where, f"{key}: must be a non-empty string, got {show(value)}")
        elif key == "expect_regex":
            regex = _input.pattern(sec, "expect_regex", value, where=where)
            if regex is not None:
                steps.append(Step(regex=regex))
        else:
            data = value.encode()
            steps.append(Step(send=data) if key == "send" else Step(expect=data))
    return tuple(steps)


def target(spec: TcpSpec) -> str:
    return hostport(spec.host, spec.port)


async def probe(spec: TcpSpec, ctx: ProbeContext) -> CheckResult:
    """One connection and script; see the module docstring for the classification."""
    started = time.perf_counter()
    stream: Stream | None = None
    try:
        stream = await Stream.open(spec.host, spec.port, target(spec))
        if spec.tls.implicit:
            await stream.start_tls(tls_context(ctx, spec.tls), spec.tls.server_name or spec.host)
        reason = await _run(spec, stream, ctx)
        return CheckResult.success(time.perf_counter() - started, reason, _observe(stream))
    except Failed as failed:
        return failed.result(started, _observe(stream) if stream else {})
    finally:
        if stream is not None:
            await stream.close()


def _observe(stream: Stream) -> dict[str, float]:
    return {"bytes_read": float(stream.bytes_read), **stream.observations}


async def _run(spec: TcpSpec, stream: Stream, ctx: ProbeContext) -> str:
    pending = bytearray()  # what the server sent after the last match
    got = ""
    for n, step in enumerate(spec.steps, 1):
        where = f"step {n}: " if len(spec.steps) > 2 else ""
        if step.starttls:
            if pending:
                raise Failed(ErrorKind.PROTOCOL, f"{where}{target(spec)} sent "
                             f"{_show(bytes(pending))} before TLS started")
            await stream.start_tls(tls_context(ctx, spec.tls), spec.tls.server_name or spec.host)
        elif step.expect or step.regex:
            pending, got = await _expect(spec, stream, step, pending, where)
        else:
            await stream.send(step.send)
    tls = ", TLS" if stream.is_tls else ""
    expects = sum(1 for s in spec.steps if s.expect or s.regex)
    if not expects:
        return f"connected{tls}"
    return got + tls if expects == 1 else f"all {len(spec.steps)} steps passed{tls} (last {got})"


async def _expect(spec: TcpSpec, stream: Stream, step: Step, pending: bytearray, where: str
                  ) -> tuple[bytearray, str]:
    """Read until the step matches; returns the bytes after the match and what matched."""
    buf, start = pending, 0
    # Bounded: every turn reads at least one byte or ends at EOF, and never past max_read.
    while True:
        found = _match(step, buf, start)
        if found is not None:
            end, what = found
            return buf[end:], what
        if len(buf) >= spec.max_read:
            break
        chunk = await stream.read_some(spec.max_read - len(buf))
        if not chunk:
            break
        # A literal can only start in the last len(expect)-1 old bytes or later.
        start = max(0, len(buf) - len(step.expect) + 1) if step.expect else 0
        buf += chunk
    if not buf:
        # Nothing at all: the service accepted and hung up, it did not answer wrongly.
        said = ("without sending anything" if not stream.bytes_read
                else f"before sending {step.wanted()}")
        raise Failed(ErrorKind.PROTOCOL, f"{where}{target(spec)} closed the connection {said}")
    part = f"the first {len(buf)} bytes" if len(buf) >= spec.max_read else f"the {len(buf)} bytes"
    raise Failed(ErrorKind.ASSERTION, f"{where}expected {step.wanted()} not in {part} the server "
                                      f"sent (it began {_show(bytes(buf[:40]))})")


def _match(step: Step, buf: bytearray, start: int) -> tuple[int, str] | None:
    """(end of the match, how to say it) or None. A regex is searched over the whole
    buffer on every chunk (it cannot be resumed); max_read bounds the cost."""
    if step.regex is not None:
        m = step.regex.search(buf, start)
        return (m.end(), f"matched {step.wanted()}") if m else None
    at = buf.find(step.expect, start)
    return (at + len(step.expect), f"got {_show(step.expect)}") if at >= 0 else None


def _show(data: bytes, limit: int = 40) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")
