"""The service under a real systemd: install, page, score, watchdog, reload, journal.

One systemd is booted for the module (tests/systemd_root.py) and the tests
run in order on it, as an administrator would: `deploy/install.sh` installs
into it, a local target goes down and the page reaches a local receiver,
`systemd-analyze security` rates the unit, a SIGSTOPped agent is restarted
by the watchdog without losing its incident, `systemctl reload` rejects a
broken config and applies a good one, `journalctl -p warning` shows only
warnings and errors, and a re-run of the installer upgrades in place. The
receiver and the target run in a thread of their own, on 127.0.0.1: the
namespace shares the host's network, so the service reaches them there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support import ROOT, Receiver
from tests.systemd_root import Booted, require_booting
from tests.test_e2e import Target

T = TypeVar("T")
#: The watchdog and restart delay, shortened for the test by a drop-in.
WATCHDOG_S = 3
#: When the second escalation step pages the owner, after the incident opened.
STEP2_S = 15


class Background:
    """An event loop in a thread for the receiver and the target, so that the tests'
    blocking calls into the namespace never stall them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _shop() -> Target:
    """The shop's website (made in the background loop, which serves it)."""
    shop = Target()
    await shop.start()
    return shop


def wait_until(pred: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `pred` until truthy; bounded in time and so in count."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def service_config(receiver: Receiver, shop_port: int, *, extra: str = "") -> str:
    return f"""
[agent]
listen = "127.0.0.1:0"

[defaults]
interval = "1s"
timeout = "800ms"
confirm = 2
recheck_interval = "200ms"
policy = "standard"

[[contacts]]
name = "frontline"
urls = ["json://127.0.0.1:{receiver.port}/frontline"]

[[contacts]]
name = "owner"
urls_file = "secrets/owner.urls"

[[policies]]
name = "standard"
ack_timeout = "off"

[[policies.steps]]
after = "0s"
notify = ["frontline"]

[[policies.steps]]
after = "{STEP2_S}s"
notify = ["owner"]

[[checks]]
name = "shop"
type = "http"
url = "http://127.0.0.1:{shop_port}/"
{extra}
"""


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    require_booting()
    bg = Background()
    receiver = bg.run(Receiver().start())
    shop = bg.run(_shop())
    booted = Booted()
    started = time.monotonic()
    booted.start()
    print(f"\nnamespace systemd booted in {time.monotonic() - started:.1f}s")
    try:
        yield {"bg": bg, "receiver": receiver, "shop": shop, "sys": booted}
    finally:
        booted.stop()
        bg.run(receiver.close())
        bg.run(shop.runner.cleanup())
        bg.close()


def _state(sys_: Booted) -> Path:
    return sys_.root / "var" / "lib" / "private" / "onwatch"


def _metric(sys_: Booted, name: str) -> float | None:
    address = (_state(sys_) / "agent.addr").read_text().strip()
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _main_pid(sys_: Booted) -> int:
    return int(sys_.run(["systemctl", "show", "-p", "MainPID", "--value", "onwatch"])
               .stdout.strip())


def _pages(receiver: Receiver, path: str) -> list[str]:
    return [m.get("title", "") for m in receiver.messages if m.get("_path") == path]


def test_install_starts_the_service_and_a_page_arrives(env: dict[str, Any]) -> None:
    sys_, receiver, shop = env["sys"], env["receiver"], env["shop"]
    started = time.monotonic()
    out = sys_.run(["/usr/src/onwatch/deploy/install.sh", "--wheels",
                    "/var/cache/onwatch-wheels", "--no-start"], timeout=300).stdout
    print(f"install.sh took {time.monotonic() - started:.1f}s")
    assert "starter config written to /etc/onwatch/config.toml" in out
    assert "Next:" in out
    etc = sys_.root / "etc" / "onwatch"
    assert (etc.stat().st_mode & 0o777) == 0o700
    assert ((etc / "config.toml").stat().st_mode & 0o777) == 0o600
    assert "ok," in sys_.run(["onwatch", "validate"]).stdout  # the default path, as root
    # The shop's own config: the owner's URL is a root-only secret file.
    (etc / "secrets" / "owner.urls").write_text(f"json://127.0.0.1:{receiver.port}/owner\n")
    (etc / "secrets" / "owner.urls").chmod(0o600)
    (etc / "config.toml").write_text(service_config(receiver, shop.port))
    dropin = sys_.root / "etc" / "systemd" / "system" / "onwatch.service.d"
    dropin.mkdir(parents=True)
    (dropin / "test.conf").write_text(f"[Service]\nWatchdogSec={WATCHDOG_S}s\nRestartSec=1s\n")
    sys_.run(["systemctl", "daemon-reload"])
    sys_.run(["systemctl", "start", "onwatch"])  # Type=notify: returns once READY
    status = sys_.run(["systemctl", "show", "-p", "StatusText", "--value", "onwatch"]).stdout
    assert status.strip() == "watching 1 check, 0 open incidents"
    wait_until(lambda: _metric(sys_, "onwatch_check_up") == 1.0, 20, "the shop up")
    env["bg"].run(shop.stop())
    wait_until(lambda: _pages(receiver, "/frontline"), 20, "the DOWN page to frontline")
    assert _pages(receiver, "/frontline")[0].startswith("[DOWN] shop")
    env["opened"] = time.monotonic()
    # The hint printed in the page works as printed, on that server, as root.
    shown = sys_.run(["onwatch", "show", "1"]).stdout
    assert "Incident #1" in shown and "[open" in shown


def test_security_exposure_is_at_most_2(env: dict[str, Any]) -> None:
    out = env["sys"].run(["systemd-analyze", "security", "--no-pager", "onwatch.service"]).stdout
    m = re.search(r"Overall exposure level for onwatch\.service: ([0-9.]+)", out)
    assert m, out
    print(f"\nsystemd-analyze security onwatch.service: {m.group(1)}")
    assert float(m.group(1)) <= 2.0, out


def test_the_probe_unit_runs_hardened_beside_its_central(env: dict[str, Any]) -> None:
    """systemd/onwatch-probe.service as its comments say: key and config as root-only
    credentials, a dynamic user, the same hardening score."""
    sys_ = env["sys"]
    out = sys_.run(["onwatch", "probe", "add", "berlin"]).stdout
    key = re.search(r'key = "([^"]+)"', out)
    assert key, out
    address = (_state(sys_) / "agent.addr").read_text().strip()
    etc = sys_.root / "etc" / "onwatch"
    (etc / "probe.key").write_text(key.group(1) + "\n")
    (etc / "probe.toml").write_text(f'[probe]\nname = "berlin"\ncentral = "http://{address}"\n'
                                    'key_file = "probe.key"\n')
    for f in ("probe.key", "probe.toml"):
        (etc / f).chmod(0o600)
    unit = (ROOT / "systemd" / "onwatch-probe.service").read_text()
    (sys_.root / "etc" / "systemd" / "system" / "onwatch-probe.service").write_text(unit)
    sys_.run(["systemctl", "daemon-reload"])
    sys_.run(["systemctl", "start", "onwatch-probe"])
    try:
        wait_until(lambda: "probe_started" in sys_.run(
            ["journalctl", "-u", "onwatch-probe", "--no-pager", "-o", "cat"]).stdout, 30,
            "the probe started, its checks fetched from the central")
        assert sys_.run(["systemctl", "is-active", "onwatch-probe"], check=False
                        ).stdout.strip() == "active"
        score = sys_.run(["systemd-analyze", "security", "--no-pager",
                          "onwatch-probe.service"]).stdout
        m = re.search(r"Overall exposure level for onwatch-probe\.service: ([0-9.]+)", score)
        assert m, score
        print(f"\nsystemd-analyze security onwatch-probe.service: {m.group(1)}")
        assert float(m.group(1)) <= 2.0, score
    finally:
        sys_.run(["systemctl", "stop", "onwatch-probe"], check=False)
    assert "1 open incident" in sys_.run(
        ["systemctl", "show", "-p", "StatusText", "--value", "onwatch"]).stdout


def test_watchdog_restarts_a_wedged_agent_and_the_incident_goes_on(env: dict[str, Any]
                                                                    ) -> None:
    sys_, receiver = env["sys"], env["receiver"]
    pid = _main_pid(sys_)
    sys_.run(["systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", "onwatch"])
    new = wait_until(lambda: (p := _main_pid(sys_)) not in (0, pid) and p, 30,
                     "systemd to restart the agent")
    assert new != pid
    journal = sys_.run(["journalctl", "-u", "onwatch", "--no-pager", "-o", "cat"]).stdout
    assert "Watchdog timeout" in journal
    wait_until(lambda: sys_.run(["systemctl", "is-active", "onwatch"], check=False)
               .stdout.strip() == "active", 20, "the restarted agent to be ready")
    assert "1 open incident" in sys_.run(
        ["systemctl", "show", "-p", "StatusText", "--value", "onwatch"]).stdout
    # The second step falls due after the restart and pages the owner once.
    left = STEP2_S - (time.monotonic() - env["opened"])
    wait_until(lambda: _pages(receiver, "/owner"), left + 20, "the owner's page (step 2)")
    time.sleep(3)  # a second copy would come within the outbox's next passes
    assert len(_pages(receiver, "/owner")) == 1
    assert len([t for t in _pages(receiver, "/frontline") if t.startswith("[DOWN]")]) == 1
    assert "[open" in sys_.run(["onwatch", "show", "1"]).stdout


def test_reload_keeps_running_config_on_error_and_applies_a_good_one(env: dict[str, Any]
                                                                      ) -> None:
    sys_, receiver, shop = env["sys"], env["receiver"], env["shop"]
    pid = _main_pid(sys_)
    conf = sys_.root / "etc" / "onwatch" / "config.toml"
    good = conf.read_text()
    conf.write_text(good.replace('interval = "1s"', 'interval = "soon"') + "\nfrobnicate = 1\n")
    sys_.run(["systemctl", "reload", "onwatch"])
    wait_until(lambda: _metric(sys_, "onwatch_config_last_reload_successful") == 0.0, 15,
               "the failed reload in /metrics")
    journal = sys_.run(["journalctl", "-u", "onwatch", "--no-pager", "-o", "cat"]).stdout
    assert "defaults: interval" in journal and "frobnicate" in journal
    assert _main_pid(sys_) == pid
    assert _metric(sys_, "onwatch_check_up") == 0.0  # still watching the shop, still down
    # A good one: a check added; the shop's incident and its escalation go on.
    conf.write_text(service_config(receiver, shop.port, extra=f"""
[[checks]]
name = "receiver"
type = "tcp"
host = "127.0.0.1"
port = {receiver.port}

[[checks]]
name = "loopback-ping"
type = "icmp"
host = "127.0.0.1"
wait = "500ms"
"""))
    sys_.run(["systemctl", "reload", "onwatch"])
    wait_until(lambda: _metric(sys_, "onwatch_config_last_reload_successful") == 1.0, 15,
               "the good reload in /metrics")
    wait_until(lambda: _metric(sys_, 'onwatch_check_up{check="receiver"}') == 1.0, 15,
               "the added check to run")
    # icmp under the hardened unit: CAP_NET_RAW is all it keeps, and it works.
    wait_until(lambda: _metric(sys_, 'onwatch_check_up{check="loopback-ping"}') == 1.0, 15,
               "the icmp check up")
    assert _main_pid(sys_) == pid
    wait_until(lambda: "watching 3 checks, 1 open incident" in sys_.run(
        ["systemctl", "show", "-p", "StatusText", "--value", "onwatch"]).stdout, 10,
        "STATUS= to say so")
    assert len([t for t in _pages(receiver, "/frontline") if t.startswith("[DOWN]")]) == 1


def test_backup_while_the_service_runs(env: dict[str, Any]) -> None:
    sys_ = env["sys"]
    out = sys_.run(["onwatch", "backup", "/root/onwatch-backup.db"]).stdout
    assert "backed up" in out
    copy = sys_.root / "root" / "onwatch-backup.db"
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT state FROM incidents WHERE id = 1").fetchone()[0] == "open"
    db.close()
    # Restored as README says: stop, put the copy in place, start.
    state = "/var/lib/private/onwatch"
    for line in _readme_restore():
        sys_.run(line.split())
    assert state.endswith("onwatch") and "[open" in sys_.run(["onwatch", "show", "1"]).stdout
    wait_until(lambda: "1 open incident" in sys_.run(
        ["systemctl", "show", "-p", "StatusText", "--value", "onwatch"]).stdout, 20,
        "the restored agent with its open incident")


def _readme_restore() -> list[str]:
    """The restore commands of README.md, as written there (without sudo, with this copy)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("**Restore**"):].split("```sh", 1)[1].split("```", 1)[0]
    lines = [ln.split("#", 1)[0].strip().removeprefix("sudo ") for ln in block.splitlines()]
    return [ln.replace("/root/backups/onwatch-20260101-120000.db", "/root/onwatch-backup.db")
            for ln in lines if ln]


def test_journal_priorities(env: dict[str, Any]) -> None:
    sys_ = env["sys"]
    cmd = ["journalctl", "-u", "onwatch", "--no-pager", "-o", "cat", "_COMM=onwatch"]
    everything = [json.loads(line) for line in sys_.run(cmd).stdout.splitlines()
                  if line.startswith("{")]
    assert any(e["event"] == "agent_started" for e in everything)
    warnings = [json.loads(line) for line in sys_.run([*cmd, "-p", "warning"]).stdout
                .splitlines() if line.startswith("{")]
    assert warnings, "the failed reload logged its problems as errors"
    assert {e["level"] for e in warnings} <= {"warning", "error", "critical"}
    assert not any(e["event"] == "agent_started" for e in warnings)


def test_install_again_upgrades_in_place_and_keeps_the_config(env: dict[str, Any]) -> None:
    sys_ = env["sys"]
    conf = sys_.root / "etc" / "onwatch" / "config.toml"
    before, pid = conf.read_text(), _main_pid(sys_)
    out = sys_.run(["/usr/src/onwatch/deploy/install.sh", "--wheels",
                    "/var/cache/onwatch-wheels"], timeout=300).stdout
    assert "kept your config /etc/onwatch/config.toml" in out
    assert conf.read_text() == before
    assert _main_pid(sys_) not in (0, pid)
    assert "1 open incident" in sys_.run(
        ["systemctl", "show", "-p", "StatusText", "--value", "onwatch"]).stdout


def test_uninstall_keeps_the_store_unless_purged(env: dict[str, Any]) -> None:
    sys_ = env["sys"]
    sys_.run(["/usr/src/onwatch/deploy/uninstall.sh"])
    assert not (sys_.root / "opt" / "onwatch").exists()
    assert (_state(sys_) / "onwatch.db").exists()
    assert (sys_.root / "etc" / "onwatch" / "config.toml").exists()
    assert sys_.run(["systemctl", "cat", "onwatch"], check=False).returncode != 0
    sys_.run(["/usr/src/onwatch/deploy/uninstall.sh", "--purge"])
    assert not (_state(sys_) / "onwatch.db").exists()
    with contextlib.suppress(FileNotFoundError):
        assert not list((sys_.root / "etc" / "onwatch").iterdir())
