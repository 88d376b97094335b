"""Throughput benchmark of the real agent process running checks on loopback.

Run (from the repository root; ~2 min per mode with the defaults, ~10 min for kinds):

    python3 benchmarks/throughput.py --mode all [--baseline]
    python3 benchmarks/throughput.py --mode paced --duration 60 --checks 500
    python3 benchmarks/throughput.py --mode saturated --py-spy /tmp/agent.txt
    python3 benchmarks/throughput.py --mode tcp             # + the paced http reference
    python3 benchmarks/throughput.py --mode kinds mixed     # per kind, then the mix
    python3 benchmarks/throughput.py --mode kinds --kinds tcp,dns --duration 20
    python3 benchmarks/throughput.py --mode growth [--baseline]  # 100 .. 10,000 checks

--mode growth (first, alone) runs benchmarks/growth.py with the flags that follow
(issue 19: RSS, scrape cost and lateness from 100 to 10,000 checks; see its
docstring). Otherwise --mode takes one or more modes, run in the order given
("all" = paced saturated lateness). The flags --duration, --warmup, --checks,
--interval and --concurrency override every mode run.

What happens per mode: a target server (benchmarks/target_server.py, a separate
process on 127.0.0.1) and `python3 -m agent run --config <generated toml>` are
started; the agent listens on 127.0.0.1:0 (its port is read from the
"agent_started" log line), runs N `type = "http"` checks against
http://127.0.0.1:PORT/c/<i> with no contacts, and is measured over a window
that starts after a warm-up (start-up is never measured). Both processes are
stopped at the end; every wait is bounded.

Modes and the targets they are judged against:
    paced      500 checks every 20 s (25 checks/s), 20 s warm-up: <= 1.3 CPU-ms/check
    saturated  3000 checks every 1 s, more than the agent can run, so it runs
               as many as it can: <= 0.35 CPU-ms/check
    lateness   1000 checks every 10 s, every 10th target (/hang/<i>) never answers
               and times out after 5 s (those checks open incidents, which is
               expected): lateness p99 <= 50 ms, peak RSS <= 100 MB

The other kinds (issue 3: "no kind may cost more than 2x the CPU per check of
http except the mail round trip"):
    tcp        500 tcp checks every 20 s (the paced pace), each a POS-terminal-like
               script (send "PING\\r\\n", expect "PONG") against the line server of
               benchmarks/kind_targets.py (uvloop): CPU-ms/check <= 2x http's. The
               http figure is the paced mode of the same invocation, run right after
               tcp unless --mode also names paced (or --http-ref CPU_MS gives one).
    kinds      one agent per kind in turn, http first: 200 checks of the kind every
               20 s (10 checks/s), 20 s warm-up, 30 s window each; a summary table
               gives CPU-ms/check per kind and its ratio to http's, PASS when <= 2x.
               A kind whose runs failed (over 1 %) FAILs: its figure would not be
               the cost of a passing check.
    mixed      one agent, 500 checks every 20 s shared out as http 200, tcp 100,
               tls 50, dns 50, heartbeat 50, smtp 20, icmp 15, imap 5, pop3 5,
               host 5; runs/s and results per kind, and the agent's CPU-ms/check
               for the whole mix. One process's CPU cannot be split by kind: with
               `--mode kinds mixed` it also prints the figure the kinds measured
               alone predict for this mix (measured/predicted near 1 means the
               per-kind figures add up). No target of its own.

What each kind's checks are (config keys as in config.example.toml), all on 127.0.0.1:
    http       GET http://127.0.0.1:P/c/<i> (benchmarks/target_server.py, raw, uvloop)
    tcp        send = "PING\\r\\n", expect = "PONG" (kind_targets.py)
    tls        handshake with a certificate for 127.0.0.1 from a trustme CA made at
               start; ca_file = that CA (kind_targets.py writes it)
    dns        query_type A of h<i>.bench.test, resolver = "127.0.0.1:P", expect =
               ["192.0.2.10"]; the responder answers with dnspython (kind_targets.py)
    smtp       aiosmtpd offering STARTTLS (same CA): starttls = "require" (the
               default) and rcpt = "info@bench.test" (MAIL FROM, RCPT TO, RSET, QUIT)
    imap/pop3  a real dovecot started with tests/dovecot.py's helper (its
               certificate from a trustme CA): STARTTLS/STLS required, login, and
               EXAMINE INBOX / STAT. Skipped, with the reason, without
               /usr/sbin/dovecot (apt-get install dovecot-imapd dovecot-pop3d).
    heartbeat  period = interval, grace 60 s; this benchmark plays the jobs: a
               thread pings GET /heartbeat/<name>?token=... once per interval per
               check, a new connection each, like curl from cron. The agent's side
               of the pings (aiohttp request, token check, log line) is part of the
               kind's CPU, as it is in production.
    host       disks = ["/"], the default thresholds (psutil, in a worker thread)
    icmp       127.0.0.1, count = 3, wait 1 s (a raw socket when run as root).
               Skipped where this user may send no ICMP echo.
    mailflow   not measured: it is the exception of the 2x rule, and it needs an
               MTA that delivers into the mailbox it searches over IMAP.

Figures printed:
    checks/s         completed runs in the window (sum of the deltas of every
                     onwatch_check_runs_total series, any result) / window seconds
    CPU-ms/check     user+system CPU of the whole agent process (all threads; psutil
                     cpu_times delta over the window) / checks completed. The two
                     /metrics scrapes that bound the window are outside it.
    lateness p50/p99 how late probes started after their due time: the delta of the
                     onwatch_scheduler_lateness_seconds histogram over the window,
                     quantiles INTERPOLATED FROM BUCKETS the way Prometheus's
                     histogram_quantile() does (so only as exact as the buckets)
    peak RSS         VmHWM of the agent from /proc/<pid>/status (whole life)
    target CPU       CPU of the target server over the window, in % of one core,
                     to show that the target was not the bottleneck (all targets of
                     the mode summed, dovecot's short-lived processes included)
    scheduled runs   (tcp, kinds, mixed) the phase slots in the window, offset +
                     k * interval with agent/scheduler.py's offsets, and how many runs
                     the agent made against them. Near-instant probes (heartbeat, and
                     at times icmp or dns on loopback) run MORE often than scheduled:
                     uvloop's clock is coarse and its timers wake up to a few ms
                     early, so a probe that ends before its due time gets
                     next_slot(now) == that same due time and runs again (an agent
                     bug, not the benchmark's). When a kind has over 2 % more runs
                     than slots, its judged figure is CPU per slot (the extra runs'
                     CPU charged to the runs that were due), marked "per slot".
    heartbeat pings  pings the benchmark sent that the agent accepted (200) / not

--baseline also runs benchmarks/bare_client.py (the same GETs on the same
schedule through one shared force_close ClientSession, nothing else) for
paced and saturated and prints its CPU-ms per GET next to the agent's.
--agent-dir DIR runs the agent from another source tree (e.g. `git archive HEAD`
unpacked in /tmp) to compare versions.
--py-spy FILE attaches py-spy (if installed) to the agent during the window
and writes a raw (collapsed) profile; sampling perturbs the CPU figures.
Exit status: 0 when every target passed, 1 otherwise.

Every target process is a child started here and stopped here (by its pid, or its
process group for the forked ones) on every exit; each one also exits by itself
after 30 min. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
LATENESS = "onwatch_scheduler_lateness_seconds"
RUNS = "onwatch_check_runs_total"
DOVECOT = "/usr/sbin/dovecot"


@dataclass(frozen=True)
class Mode:
    name: str
    checks: int
    interval: float
    timeout: float
    warmup: float
    duration: float
    concurrency: int = 200
    hang_every: int = 0  # every n-th target hangs (0: none)
    confirm: int = 20  # high: a blip must not open incidents and churn the store
    recheck: float | None = None  # None: = interval, so a failure does not change the pace
    max_cpu_ms: float | None = None
    max_p99_ms: float | None = None
    max_rss_mb: float | None = None
    #: (kind, weight): the checks are shared out by weight; () = all http, named c<i>
    mix: tuple[tuple[str, float], ...] = ()
    max_ratio: float | None = None  # CPU-ms/check over the http reference's


MODES = {
    "paced": Mode("paced", 500, 20.0, 5.0, 20.0, 60.0, max_cpu_ms=1.3),
    "saturated": Mode("saturated", 3000, 1.0, 0.9, 15.0, 60.0, max_cpu_ms=0.35),
    "lateness": Mode("lateness", 1000, 10.0, 5.0, 35.0, 60.0, hang_every=10, confirm=3,
                     recheck=5.0, max_p99_ms=50.0, max_rss_mb=100.0),
}
#: The modes of issue 3: other kinds, judged against http's CPU per check.
KIND_MODES = {
    "tcp": Mode("tcp", 500, 20.0, 5.0, 20.0, 60.0, mix=(("tcp", 1),), max_ratio=2.0),
    "mixed": Mode("mixed", 500, 20.0, 5.0, 20.0, 60.0, mix=(
        ("http", 200), ("tcp", 100), ("tls", 50), ("dns", 50), ("heartbeat", 50),
        ("smtp", 20), ("icmp", 15), ("imap", 5), ("pop3", 5), ("host", 5))),
}
#: --mode kinds: one agent per kind in turn, http first (the reference).
KINDS = ("http", "tcp", "tls", "dns", "smtp", "imap", "pop3", "heartbeat", "host", "icmp")
KIND_RUN = Mode("kind", 200, 20.0, 5.0, 20.0, 30.0, max_ratio=2.0)
SKIPPED = {"mailflow": "exempt from the 2x rule (issue 3), and it needs an MTA that "
                       "delivers into the IMAP mailbox it searches; not measured"}
SERVED = ("tcp", "tls", "dns", "smtp")  # by benchmarks/kind_targets.py
HEARTBEAT_TOKEN = "bench-heartbeat-token-0123456789"
#: More runs than phase slots by this fraction: judge CPU per slot, not per run.
EXTRA_RUNS = 0.02


# ------------------------------------------------------------------ processes

def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def checks_of(mode: Mode) -> list[tuple[str, str, int]]:
    """(name, kind, index) of every check: `checks` shared out over the mix by weight."""
    if not mode.mix:
        return [(f"c{i}", "http", i) for i in range(mode.checks)]
    total = sum(w for _, w in mode.mix)
    return [(f"{kind}{i}", kind, i) for kind, w in mode.mix
            for i in range(max(1, round(mode.checks * w / total)))]


@dataclass
class Services:
    """What the checks of a mode run against (all on 127.0.0.1)."""

    http: int = 0
    ports: dict[str, int] = field(default_factory=dict)  # tcp, tls, dns, smtp
    ca_file: str = ""
    dovecot: Any = None  # tests/dovecot.py's Dovecot, for imap and pop3
    procs: list[psutil.Process] = field(default_factory=list)  # their CPU is "target CPU"


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string (\uXXXX escapes too)


def stanza(name: str, kind: str, i: int, mode: Mode, svc: Services) -> list[str]:
    """The [[checks]] entry of one check of `kind` (see config.example.toml)."""
    lines = ["", "[[checks]]", f"name = {_q(name)}", f"type = {_q(kind)}"]
    host = 'host = "127.0.0.1"'
    if kind == "http":
        path = "hang" if mode.hang_every and i % mode.hang_every == 0 else "c"
        lines.append(f'url = "http://127.0.0.1:{svc.http}/{path}/{i}"')
    elif kind == "tcp":  # a POS terminal's keep-alive
        lines += [host, f"port = {svc.ports['tcp']}", f"send = {_q('PING' + chr(13) + chr(10))}",
                  'expect = "PONG"']
    elif kind == "tls":
        lines += [host, f"port = {svc.ports['tls']}", f"ca_file = {_q(svc.ca_file)}"]
    elif kind == "dns":
        lines += [f'query_name = "h{i}.bench.test"', 'query_type = "A"',
                  f'resolver = "127.0.0.1:{svc.ports["dns"]}"', 'expect = ["192.0.2.10"]']
    elif kind == "smtp":  # STARTTLS required (the default) and "accepts mail for"
        lines += [host, f"port = {svc.ports['smtp']}", f"ca_file = {_q(svc.ca_file)}",
                  'rcpt = "info@bench.test"']
    elif kind in ("imap", "pop3"):  # STARTTLS/STLS required (the default) and a login
        d = svc.dovecot
        lines += [host, f"port = {d.imap if kind == 'imap' else d.pop3}",
                  f"ca_file = {_q(d.ca_file)}", f"username = {_q(d.user)}",
                  f"password = {_q(d.password)}"]
    elif kind == "heartbeat":  # pushed once per interval by Pusher
        lines += [f'period = "{_ms(mode.interval)}"', 'grace = "60s"',
                  f"token = {_q(HEARTBEAT_TOKEN)}"]
    elif kind == "host":
        lines += ['disks = ["/"]']
    elif kind == "icmp":
        lines += [host, "count = 3", 'wait = "1s"']
    else:
        raise SystemExit(f"no stanza for kind {kind!r}")
    return lines


def write_config(mode: Mode, svc: Services, tmp: Path) -> Path:
    lines = [
        "[agent]",
        f'state_dir = "{tmp / "state"}"',
        'listen = "127.0.0.1:0"',
        f"max_concurrency = {mode.concurrency}",
        'log_level = "info"',
        "",
        "[defaults]",
        f'interval = "{_ms(mode.interval)}"',
        f'timeout = "{_ms(mode.timeout)}"',
        f"confirm = {mode.confirm}",
        "recover = 1",
        f'recheck_interval = "{_ms(mode.recheck or mode.interval)}"',
        'severity = "low"',
    ]
    for name, kind, i in checks_of(mode):
        lines += stanza(name, kind, i, mode, svc)
    cfg = tmp / "onwatch.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def unavailable(kind: str) -> str | None:
    """Why `kind` cannot be measured on this machine, or None."""
    if kind in ("imap", "pop3") and not os.access(DOVECOT, os.X_OK):
        return (f"needs dovecot ({DOVECOT} missing: "
                "apt-get install dovecot-imapd dovecot-pop3d)")
    if kind == "icmp":
        for kind_ in (socket.SOCK_DGRAM, socket.SOCK_RAW):
            try:
                socket.socket(socket.AF_INET, kind_, socket.IPPROTO_ICMP).close()
                return None
            except OSError:
                pass
        return "this user may not send ICMP echo (ping_group_range, CAP_NET_RAW)"
    return SKIPPED.get(kind)


def start_kind_targets(serve: list[str], tmp: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "kind_targets.py"), "--dir", str(tmp),
         "--serve", ",".join(serve), "--max-seconds", "1800"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # one JSON line once everything listens
    if not line:
        raise SystemExit(f"kind targets did not start (exit {proc.wait(10)})")
    return proc, dict(json.loads(line))


def start_services(mode: Mode, args: argparse.Namespace, tmp: Path, stack: ExitStack
                   ) -> Services:
    """Starts what the mode's checks need; `stack` stops all of it."""
    kinds = {kind for _, kind, _ in checks_of(mode)}
    svc = Services()
    if "http" in kinds:
        target, svc.http = start_target(args.target_workers, args.target_impl)
        stack.callback(stop_proc, target, group=True)
        svc.procs.append(psutil.Process(target.pid))
    serve = [k for k in SERVED if k in kinds]
    if serve:
        kt, info = start_kind_targets(serve, tmp)
        stack.callback(stop_proc, kt, group=True)
        svc.procs.append(psutil.Process(kt.pid))
        svc.ports = {k: int(info[k]) for k in serve}
        svc.ca_file = str(info.get("ca_file", ""))
    if kinds & {"imap", "pop3"}:
        import trustme

        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.dovecot import running_dovecot  # stops its dovecot by pid

        before = {p.pid for p in psutil.Process().children()}
        svc.dovecot = stack.enter_context(running_dovecot(trustme.CA()))
        svc.procs += [p for p in psutil.Process().children()
                      if p.pid not in before and p.name() == "dovecot"]
    return svc


class Pusher(threading.Thread):
    """The jobs behind heartbeat checks: each pings GET /heartbeat/<name>?token= once per
    interval, at the phase the scheduler would give it (crc32 of the name). Each ping is a
    new connection, as `curl` from cron makes. Stops when told, bounded by `until`."""

    def __init__(self, address: str, names: list[str], interval: float, until: float) -> None:
        super().__init__(daemon=True)
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.schedule = sorted((zlib.crc32(n.encode()) / 2**32 * interval, n) for n in names)
        self.interval, self.until = interval, until
        self.stop = threading.Event()
        self.sent = self.failed = 0

    def run(self) -> None:
        start, k = time.monotonic(), 0
        while self.schedule:
            cycle, idx = divmod(k, len(self.schedule))
            offset, name = self.schedule[idx]
            at = start + cycle * self.interval + offset
            if at > self.until or self.stop.wait(max(0.0, at - time.monotonic())):
                return
            conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                conn.request("GET", f"/heartbeat/{name}?token={HEARTBEAT_TOKEN}")
                ok = conn.getresponse().status == 200
            except OSError:
                ok = False
            finally:
                conn.close()
            self.sent += ok
            self.failed += not ok
            k += 1


def start_target(workers: int, impl: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "target_server.py"), "--workers", str(workers),
         "--impl", impl, "--max-seconds", "1800"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its port once it listens
    if not line:
        raise SystemExit(f"target server did not start (exit {proc.wait(10)})")
    return proc, int(json.loads(line)["port"])


def stop_proc(proc: subprocess.Popen[Any], *, group: bool = False, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait(timeout)


def start_agent(cfg: Path, tmp: Path, agent_dir: Path, timeout: float = 60.0
                ) -> tuple[subprocess.Popen[bytes], str]:
    log = (tmp / "agent.log").open("wb")
    # `-m agent` from agent_dir imports that tree's agent/ and checks/ (sys.path[0] is the cwd).
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                            cwd=str(agent_dir), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in (tmp / "agent.log").read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("event") == "agent_started":
                return proc, str(ev["listen"])
        if proc.poll() is not None:
            raise SystemExit(f"agent exited {proc.returncode}:\n"
                             + (tmp / "agent.log").read_text(errors="replace")[-3000:])
        time.sleep(0.1)
    stop_proc(proc)
    raise SystemExit(f"agent did not log agent_started within {timeout:g}s")


def tree_cpu(proc: psutil.Process) -> float:
    """user+system seconds of a process and its children (the target's workers), the
    children it has already reaped included (dovecot's per-connection processes)."""
    total = 0.0
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for p in tree:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# -------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


Scrape = tuple[dict[float, float], dict[str, float], dict[str, dict[str, float]]]


def scrape(address: str) -> Scrape:
    """(lateness bucket counts by upper bound, run counts by result summed over checks,
    run counts by check and result)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=60) as resp:
        text = resp.read().decode()
    buckets: dict[float, float] = {}
    runs: dict[str, float] = {}
    per_check: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith((LATENESS + "_bucket", RUNS)):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, value = m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))
        if name == LATENESS + "_bucket":
            buckets[float(labels["le"])] = value  # "+Inf" parses as inf
        elif name == RUNS:
            runs[labels["result"]] = runs.get(labels["result"], 0.0) + value
            per_check.setdefault(labels["check"], {})[labels["result"]] = value
    return buckets, runs, per_check


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile over cumulative buckets {upper bound: count}.

    Linear interpolation inside the bucket holding the rank; the lowest bucket's
    lower bound is 0; a rank in the +Inf bucket returns the highest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return math.nan
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for i, b in enumerate(bounds):
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return bounds[-2] if len(bounds) > 1 else math.nan
            if i == 0 and b <= 0:
                return b
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return bounds[-2]


# ---------------------------------------------------------------- measuring

def _verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return ""
    return f"target <= {limit:g}  {'PASS' if value <= limit else 'FAIL'}"


def _describe(mode: Mode) -> str:
    """"500 http checks" or "500 checks (http 200, tcp 100, ...)"."""
    counts: dict[str, int] = {}
    for _, kind, _ in checks_of(mode):
        counts[kind] = counts.get(kind, 0) + 1
    n = sum(counts.values())
    if len(counts) == 1:
        return f"{n} {next(iter(counts))} checks"
    return f"{n} checks ({', '.join(f'{k} {v}' for k, v in counts.items())})"


def run_mode(mode: Mode, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    tmp = Path(tempfile.mkdtemp(prefix=f"onwatch-bench-{mode.name}-"))
    kind_of = {name: kind for name, kind, _ in checks_of(mode)}
    spy: subprocess.Popen[bytes] | None = None
    pusher: Pusher | None = None
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        svc = start_services(mode, args, tmp, stack)
        cfg = write_config(mode, svc, tmp)
        agent, address = start_agent(cfg, tmp, args.agent_dir)
        stack.callback(stop_proc, agent)  # first out: the agent stops before its targets
        ap = psutil.Process(agent.pid)
        where = (f"target :{svc.http}" if not mode.mix else "targets: " + (", ".join(
            [f"http :{svc.http}"] * bool(svc.http)
            + [f"{k} :{v}" for k, v in svc.ports.items()]
            + ([f"dovecot imap :{svc.dovecot.imap} pop3 :{svc.dovecot.pop3}"]
               if svc.dovecot else [])) or "none (no I/O, or the agent's own)"))
        print(f"\n== {mode.name}: {_describe(mode)} every {mode.interval:g}s "
              f"(demand {len(kind_of) / mode.interval:.0f}/s), timeout {mode.timeout:g}s"
              + (f", every {mode.hang_every}th target hangs" if mode.hang_every else "")
              + f"; agent pid {agent.pid} on {address}, {where}", flush=True)
        hb = [n for n, k in kind_of.items() if k == "heartbeat"]
        if hb:
            pusher = Pusher(address, hb, mode.interval,
                            time.monotonic() + mode.warmup + mode.duration + 10)
            pusher.start()
            stack.callback(pusher.join, 10)
            stack.callback(pusher.stop.set)
        print(f"   warm-up {mode.warmup:g}s, then a {mode.duration:g}s window ...", flush=True)
        time.sleep(mode.warmup)
        if agent.poll() is not None:
            raise SystemExit(f"agent died during warm-up (exit {agent.returncode})")

        b0, r0, c0 = scrape(address)  # scrape first, then CPU: the scrape's cost stays outside
        a0, tc0, w0 = ap.cpu_times(), sum(map(tree_cpu, svc.procs)), time.monotonic()
        if args.py_spy:
            exe = shutil.which("py-spy")
            if exe is None:
                print("   (py-spy not installed: no profile)")
            else:
                spy = subprocess.Popen([exe, "record", "--format", "raw", "-o", args.py_spy,
                                        "-d", str(int(mode.duration)), "-r", "100",
                                        "-p", str(agent.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(mode.duration)
        a1, tc1, w1 = ap.cpu_times(), sum(map(tree_cpu, svc.procs)), time.monotonic()
        b1, r1, c1 = scrape(address)
        hwm = vm_hwm_kib(agent.pid)
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                stop_proc(spy)

    wall = w1 - w0
    by_result = {k: r1.get(k, 0.0) - r0.get(k, 0.0) for k in r1}
    checks = sum(by_result.values())
    cpu_s = (a1.user + a1.system) - (a0.user + a0.system)
    cpu_ms = cpu_s * 1000 / checks if checks else math.inf
    late = {b: b1.get(b, 0.0) - b0.get(b, 0.0) for b in b1}
    p50, p99 = histogram_quantile(0.5, late), histogram_quantile(0.99, late)
    rss_mb = hwm * 1024 / 1e6
    results = ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_result.items()) if v)
    by_kind: dict[str, dict[str, float]] = {}
    for name, counts in c1.items():
        kind = kind_of.get(name, "?")
        for res, v in counts.items():
            d = by_kind.setdefault(kind, {})
            d[res] = d.get(res, 0.0) + v - c0.get(name, {}).get(res, 0.0)
    # The phase slots of the window: offset + k * interval, as agent/scheduler.py places
    # them (its loop clock is CLOCK_MONOTONIC, as time.monotonic() here).
    scheduled: dict[str, float] = {}
    for name, kind, _ in checks_of(mode):
        off = zlib.crc32(name.encode()) / 2**32 * mode.interval
        n_slots = (math.floor((w1 - off) / mode.interval) - math.floor((w0 - off) / mode.interval))
        scheduled[kind] = scheduled.get(kind, 0.0) + n_slots
    ok = True

    def line(label: str, text: str, verdict: str = "") -> None:
        nonlocal ok
        ok = ok and "FAIL" not in verdict
        print(f"   {label:<18} {text:<58} {verdict}".rstrip())

    line("checks/s", f"{checks / wall:.1f}  ({checks:.0f} runs in {wall:.1f}s: {results})")
    extra = {k: sum(by_kind.get(k, {}).values()) - n for k, n in scheduled.items()}
    if mode.mix:
        line("scheduled runs", f"{sum(scheduled.values()):.0f} phase slots in the window; "
             f"{sum(extra.values()):+.0f} runs against them")
        for k, x in extra.items():
            if x > max(EXTRA_RUNS * scheduled[k], 2):
                line("  extra runs", f"{k}: {x:.0f} more runs than slots (the agent re-ran "
                     "probes that ended before their due time; see the docstring)")
    if len(by_kind) > 1:
        for kind in KINDS:
            if kind in by_kind:
                n = sum(by_kind[kind].values())
                res = ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_kind[kind].items()) if v)
                line(f"  {kind}", f"{n / wall:.1f}/s  ({n:.0f} runs: {res})")
    sys_s = a1.system - a0.system
    line("CPU-ms/check", f"{cpu_ms:.3f}  (agent {cpu_s:.2f}s CPU = {100 * cpu_s / wall:.0f}% "
         f"of one core, {100 * sys_s / cpu_s if cpu_s else 0:.0f}% system)",
         _verdict(cpu_ms, mode.max_cpu_ms))
    slots = sum(scheduled.values())
    if mode.mix and slots and checks - slots > max(EXTRA_RUNS * slots, 2):
        line("CPU-ms/slot", f"{cpu_s * 1000 / slots:.3f}  (per phase slot: the extra runs' "
             "CPU charged to the runs that were due)")
    line("lateness p50", f"{p50 * 1000:.2f} ms  (interpolated from histogram buckets)")
    line("lateness p99", f"{p99 * 1000:.2f} ms  (interpolated from histogram buckets)",
         _verdict(p99 * 1000, mode.max_p99_ms))
    line("peak RSS (VmHWM)", f"{rss_mb:.1f} MB", _verdict(rss_mb, mode.max_rss_mb))
    if not mode.mix:
        line("target CPU", f"{100 * (tc1 - tc0) / wall:.1f}% of one core "
             f"({args.target_workers} {args.target_impl} worker(s))")
    else:
        line("target CPU", f"{100 * (tc1 - tc0) / wall:.1f}% of one core (all targets)")
    if pusher is not None:
        line("heartbeat pings", f"{pusher.sent} accepted, {pusher.failed} failed (agent-side "
             "handling is in the agent's CPU)")
    if spy is not None:
        print(f"   py-spy profile: {args.py_spy} (CPU figures perturbed by sampling)")
    return {"mode": mode.name, "checks_per_s": checks / wall, "cpu_ms_per_check": cpu_ms,
            "lateness_p50_s": p50, "lateness_p99_s": p99, "peak_rss_mb": rss_mb,
            "runs_by_kind": {k: sum(v.values()) for k, v in by_kind.items()},
            "scheduled_by_kind": scheduled, "cpu_s": cpu_s,
            "failed_by_kind": {k: sum(n for r, n in v.items() if r not in ("ok", "degraded"))
                               for k, v in by_kind.items()}}, ok


def run_baseline(mode: Mode, args: argparse.Namespace, agent_cpu_ms: float | None) -> None:
    target, port = start_target(args.target_workers, args.target_impl)
    try:
        tp = psutil.Process(target.pid)
        print("   baseline (bare aiohttp client, same GETs and schedule) ...", flush=True)
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "bare_client.py"), "--port", str(port),
             "--checks", str(mode.checks), "--interval", str(mode.interval),
             "--timeout", str(mode.timeout), "--concurrency", str(mode.concurrency),
             "--warmup", str(mode.warmup), "--duration", str(mode.duration)],
            stdout=subprocess.PIPE, text=True)
        time.sleep(mode.warmup)
        tc0 = tree_cpu(tp)
        try:
            out, _ = proc.communicate(timeout=mode.duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise SystemExit("baseline client did not finish in time") from None
        tc1 = tree_cpu(tp)
    finally:
        stop_proc(target, group=True)
    res = json.loads(out.strip().splitlines()[-1])
    gets, cpu_s, wall = res["gets"], res["cpu_s"], res["wall_s"]
    cpu_ms = cpu_s * 1000 / gets if gets else math.inf
    ratio = f"; agent/bare = {agent_cpu_ms / cpu_ms:.2f}x" if agent_cpu_ms else ""
    print(f"   {'bare GETs/s':<18} {gets / wall:.1f}  ({gets} GETs in {wall:.1f}s, "
          f"{res['failed_total']} failed in all)")
    sys_pct = 100 * res["sys_s"] / cpu_s if cpu_s else 0.0
    print(f"   {'bare CPU-ms/GET':<18} {cpu_ms:.3f}  ({cpu_s:.2f}s CPU = "
          f"{100 * cpu_s / wall:.0f}% of one core, {sys_pct:.0f}% system{ratio})")
    print(f"   {'bare peak RSS':<18} {res['vm_hwm_kib'] * 1024 / 1e6:.1f} MB;  target CPU "
          f"{100 * (tc1 - tc0) / wall:.1f}% of one core (approx. window)")


def _valid(summary: dict[str, Any], kind: str) -> str:
    """"" when the kind's runs passed; else why its CPU figure means little."""
    runs, failed = summary["runs_by_kind"].get(kind, 0.0), summary["failed_by_kind"].get(kind, 0.0)
    if not runs:
        return "no runs"
    if failed > 0.01 * runs:
        return f"{failed:.0f} of {runs:.0f} runs failed: not the cost of a passing check"
    return ""


def judged_cpu_ms(summary: dict[str, Any], kind: str) -> tuple[float, str]:
    """CPU-ms per run; per phase slot instead when the agent ran the kind's checks more
    often than scheduled (the extra runs' CPU is then charged to the slots)."""
    runs = summary["runs_by_kind"].get(kind, 0.0)
    slots = summary["scheduled_by_kind"].get(kind, 0.0)
    if slots and runs - slots > max(EXTRA_RUNS * slots, 2):
        return (summary["cpu_s"] * 1000 / slots,
                f" per slot ({runs:.0f} runs in {slots:.0f} slots)")
    return summary["cpu_ms_per_check"], ""


def _ratio_line(label: str, cpu_ms: float, ref_ms: float, limit: float | None,
                why_invalid: str = "", note: str = "") -> bool:
    ratio = cpu_ms / ref_ms if ref_ms else math.inf
    verdict = _verdict(ratio, limit)
    if limit is not None:
        verdict = verdict.replace(f"target <= {limit:g}", f"target <= {limit:g}x http")
    if why_invalid:
        verdict = f"FAIL ({why_invalid})"
    print(f"   {label:<18} {f'{cpu_ms:.3f} CPU-ms/check = {ratio:.2f}x http ({ref_ms:.3f})':<58} "
          f"{verdict}{note}".rstrip())
    return "FAIL" not in verdict


def run_kinds(args: argparse.Namespace, overrides: dict[str, Any]
              ) -> tuple[dict[str, dict[str, Any]], bool]:
    """One agent per kind in turn, http first; CPU-ms/check of each against http's."""
    wanted = [k for k in KINDS if not args.kinds or k in args.kinds.split(",") or k == "http"]
    base = replace(KIND_RUN, **overrides)
    print(f"\n== kinds: one agent per kind in turn, {base.checks} checks of the kind every "
          f"{base.interval:g}s ({base.checks / base.interval:.0f}/s), {base.warmup:g}s warm-up, "
          f"{base.duration:g}s window; target: CPU-ms/check <= {base.max_ratio:g}x http's")
    out: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    all_ok = True
    for kind in [*wanted, *SKIPPED]:
        why = unavailable(kind)
        if why:
            skipped[kind] = why
            print(f"\n== kind-{kind}: skipped, {why}")
            continue
        summary, ok = run_mode(replace(base, name=f"kind-{kind}", mix=((kind, 1),)), args)
        out[kind] = summary
        all_ok = all_ok and ok
    ref = out.get("http", {}).get("cpu_ms_per_check", 0.0)
    print(f"\n== kinds summary: CPU-ms per check, one agent per kind ({base.checks} checks "
          f"every {base.interval:g}s), against http's")
    for kind, summary in out.items():
        cpu_ms, note = judged_cpu_ms(summary, kind)
        all_ok = _ratio_line(kind, cpu_ms, ref, None if kind == "http" else base.max_ratio,
                             _valid(summary, kind), note) and all_ok
    for kind, why in skipped.items():
        print(f"   {kind:<18} skipped: {why}")
    return out, all_ok


def main() -> int:
    argv = sys.argv[1:]
    if argv[:2] == ["--mode", "growth"]:  # benchmarks/growth.py, with its own flags
        sys.path.insert(0, str(HERE))
        import growth

        return growth.main(argv[2:])
    ap = argparse.ArgumentParser(description="Throughput benchmark of the onwatch agent "
                                 "(see the module docstring; --mode growth [growth.py flags] "
                                 "runs benchmarks/growth.py).")
    ap.add_argument("--mode", nargs="+", choices=(*MODES, *KIND_MODES, "kinds", "all"),
                    default=["all"], help="one or more, run in this order; all = paced "
                    "saturated lateness (default all)")
    ap.add_argument("--duration", type=float, help="measured window, seconds (default 60; "
                    "kinds 30 per kind)")
    ap.add_argument("--warmup", type=float, help="override the mode's warm-up, seconds")
    ap.add_argument("--checks", type=int, help="override the mode's number of checks")
    ap.add_argument("--interval", type=float, help="override the mode's check interval, seconds")
    ap.add_argument("--concurrency", type=int, help="agent max_concurrency (default 200)")
    ap.add_argument("--baseline", action="store_true",
                    help="also measure a bare aiohttp client (paced and saturated)")
    ap.add_argument("--kinds", metavar="K1,K2", help="--mode kinds: only these kinds (http, "
                    "the reference, always runs); default: " + ",".join(KINDS))
    ap.add_argument("--http-ref", type=float, metavar="CPU_MS", help="--mode tcp: compare with "
                    "this http CPU-ms/check instead of running the paced mode as reference")
    ap.add_argument("--target-workers", type=int, default=1)
    ap.add_argument("--target-impl", choices=("raw", "aiohttp"), default="raw")
    ap.add_argument("--agent-dir", type=Path, default=ROOT,
                    help="run the agent from this source tree (default: this repository), e.g. "
                    "a `git archive` snapshot to compare two versions")
    ap.add_argument("--py-spy", metavar="FILE", help="record a py-spy raw profile of the agent "
                    "during the window (one mode only)")
    args = ap.parse_args()
    names: list[str] = []
    for m in args.mode:
        for name in (MODES if m == "all" else [m]):
            if name not in names:
                names.append(name)
    if "tcp" in names and "paced" not in names and args.http_ref is None:
        names.insert(names.index("tcp") + 1, "paced")  # the http reference, same pace
    if args.py_spy and (len(names) > 1 or names == ["kinds"]):
        ap.error("--py-spy profiles one mode: pick one with --mode")

    args.agent_dir = args.agent_dir.resolve()
    print(f"onwatch throughput benchmark: {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, agent from {args.agent_dir}, loopback only")
    all_ok = True
    done: dict[str, dict[str, Any]] = {}
    kinds: dict[str, dict[str, Any]] = {}
    overrides = {k: v for k, v in (("duration", args.duration), ("warmup", args.warmup),
                                   ("checks", args.checks), ("interval", args.interval),
                                   ("concurrency", args.concurrency)) if v is not None}
    for name in names:
        if name == "kinds":
            kinds, ok = run_kinds(args, _with_timeout(KIND_RUN, overrides))
            all_ok = all_ok and ok
            continue
        mode = MODES.get(name) or KIND_MODES[name]
        if mode.mix:
            missing = {k: why for k, _ in mode.mix if (why := unavailable(k))}
            for k, why in missing.items():
                print(f"\n({name}: no {k} checks: {why})")
            mode = replace(mode, mix=tuple((k, w) for k, w in mode.mix if k not in missing))
        mode = replace(mode, **_with_timeout(mode, overrides))
        summary, ok = run_mode(mode, args)
        done[name] = summary
        all_ok = all_ok and ok
        if args.baseline and name in ("paced", "saturated"):
            run_baseline(mode, args, summary["cpu_ms_per_check"])
        if name == "mixed":
            predict_mixed(summary, kinds)
        if "tcp" in done and ("paced" in done or args.http_ref is not None) \
                and name in ("tcp", "paced"):
            ref = args.http_ref if args.http_ref is not None else \
                done["paced"]["cpu_ms_per_check"]
            n = args.checks or KIND_MODES["tcp"].checks
            print(f"\n== tcp against http: {n} checks each, at the same pace"
                  + (" (http: --http-ref)" if args.http_ref is not None else
                     " (http: the paced mode of this run)"))
            cpu_ms, note = judged_cpu_ms(done["tcp"], "tcp")
            all_ok = _ratio_line("tcp", cpu_ms, ref, KIND_MODES["tcp"].max_ratio,
                                 _valid(done["tcp"], "tcp"), note) and all_ok
    print("\nall targets PASS" if all_ok else "\nsome targets FAIL")
    return 0 if all_ok else 1


def _with_timeout(mode: Mode, overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(overrides)
    if "interval" in out:
        out["timeout"] = min(mode.timeout, 0.9 * out["interval"])
    return out


def predict_mixed(summary: dict[str, Any], kinds: dict[str, dict[str, Any]]) -> None:
    """The mix's CPU-ms/check as the per-kind runs of this invocation predict it."""
    runs = summary["runs_by_kind"]
    if not kinds or not all(k in kinds for k in runs):
        print("   (per-kind CPU: run `--mode kinds mixed` to compare the mix with the "
              "kinds measured alone)")
        return
    total = sum(runs.values())
    predicted = 0.0
    for k, n in runs.items():
        cpu_ms, per_slot = judged_cpu_ms(kinds[k], k)
        predicted += cpu_ms * (summary["scheduled_by_kind"].get(k, n) if per_slot else n)
    predicted /= total
    measured = summary["cpu_ms_per_check"]
    print(f"   {'predicted':<18} {predicted:.3f} CPU-ms/check from the kinds measured alone, "
          f"weighted by the mix's runs (measured/predicted = {measured / predicted:.2f})")


if __name__ == "__main__":
    sys.exit(main())
