"""A real Prometheus and a real Alertmanager (Debian's packages) for the tests, on loopback.

`Prometheus.start(tmp, ...)` writes a config (scrape interval 1 s, rule
evaluation every 1 s, the given scrape targets, rule files and Alertmanager)
and runs `/usr/bin/prometheus` on a free 127.0.0.1 port with its TSDB in a
temporary directory; `Alertmanager.start(tmp, webhook_url, token)` runs
`/usr/bin/prometheus-alertmanager` with clustering off (empty
`--cluster.listen-address`), one route (group_wait and group_interval 1 s)
and one webhook receiver that sends the token as a bearer header. Both are
stopped by the pid they were started with. Their output goes to a log file
in the temporary directory, quoted when a wait times out.

Where the binaries are missing: under CI (`CI=true`) `require()` fails the
test, since `.ci/run` installs them; elsewhere it skips with the command that
installs them (the pattern of tests/dovecot.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import free_port, wait_for

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def require(*binaries: str) -> None:
    missing = [b for b in binaries if not os.access(b, os.X_OK)]
    if not missing:
        return
    why = (f"{', '.join(missing)} not installed; install with: "
           "apt-get install prometheus prometheus-alertmanager")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} -- .ci/run should have installed it", pytrace=False)
    pytest.skip(why)


@dataclass
class Server:
    """One started binary: its process, base URL and log file."""

    proc: asyncio.subprocess.Process
    url: str
    log: Path

    async def get(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as s, s.get(self.url + path, params=params) as r:
            return await r.json(content_type=None)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def ready(self, timeout: float = 30.0) -> None:
        async def up() -> bool:
            if self.proc.returncode is not None:
                raise AssertionError(f"{self.log.stem} exited {self.proc.returncode}:\n"
                                     + self.tail())
            try:
                async with aiohttp.ClientSession() as s, s.get(self.url + "/-/ready") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(up, timeout, f"{self.log.stem} ready at {self.url}", every=0.1)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _spawn(name: str, argv: list[str], tmp: Path, port: int) -> Server:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out,
                                                    stdin=asyncio.subprocess.DEVNULL, cwd=tmp)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        await server.ready()
    except BaseException:
        await server.stop()
        raise
    return server


class Prometheus(Server):
    @classmethod
    async def start(cls, tmp: Path, jobs: dict[str, list[str]], *,
                    rule_files: tuple[Path, ...] = (), alertmanager: str | None = None
                    ) -> Prometheus:
        """`jobs`: job name -> "host:port" targets (each scraped at /metrics every second)."""
        require(PROMETHEUS)
        root = tmp / "prometheus"
        root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in jobs.items()],
        }
        if alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [alertmanager.removeprefix("http://")]}]}]}
        # JSON is YAML: no YAML library needed to write the config.
        (root / "prometheus.yml").write_text(json.dumps(config, indent=1))
        port = free_port()
        server = await _spawn("prometheus", [
            PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s", "--log.level=warn"], root, port)
        return cls(server.proc, server.url, server.log)

    async def query(self, expr: str) -> dict[str, Any]:
        """The query API's whole answer (status "success" or "error" with errorType)."""
        got: dict[str, Any] = await self.get("/api/v1/query", query=expr)
        return got

    async def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending or firing)."""
        got = await self.get("/api/v1/alerts")
        return list(got["data"]["alerts"])

    async def rules(self) -> list[dict[str, Any]]:
        got = await self.get("/api/v1/rules")
        return [r for g in got["data"]["groups"] for r in g["rules"]]


class Alertmanager(Server):
    @classmethod
    async def start(cls, tmp: Path, webhook_url: str, token: str) -> Alertmanager:
        require(ALERTMANAGER)
        root = tmp / "alertmanager"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "route": {"receiver": "onwatch", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "onwatch", "webhook_configs": [{
                "url": webhook_url, "send_resolved": True, "max_alerts": 100,
                "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
            }]}],
        }
        (root / "alertmanager.yml").write_text(json.dumps(config, indent=1))
        port = free_port()
        server = await _spawn("alertmanager", [
            ALERTMANAGER, f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", "--log.level=warn"], root, port)
        return cls(server.proc, server.url, server.log)


async def promtool(*args: str, stdin: bytes | None = None) -> tuple[int, str]:
    """Run promtool; (exit status, what it printed on stdout and stderr)."""
    require(PROMTOOL)
    proc = await asyncio.create_subprocess_exec(
        PROMTOOL, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 60)
    return int(proc.returncode or 0), out.decode(errors="replace")


def cleanup(tmp: Path) -> None:
    """TSDB and Alertmanager data are only for the test; drop them (they can be large)."""
    for sub in ("prometheus/data", "alertmanager/data"):
        shutil.rmtree(tmp / sub, ignore_errors=True)
