"""One agent per state directory: a second `onwatch run` exits 2 naming the PID that
holds the lock; read-only commands still work beside the running agent."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, Receiver, start_agent


def _config(state: Path, receiver: Receiver) -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:{receiver.port}/alice"]
[[checks]]
name = "nightly"
type = "heartbeat"
period = "24h"
token = "a-heartbeat-token-nobody-sends"
contacts = ["alice"]
"""


def _onwatch(cfg: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


async def test_a_second_agent_on_the_same_store_exits_2_naming_the_first(
        tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    first = await start_agent(_config(state, receiver), tmp_path)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second_cfg = second_dir / "onwatch.toml"  # another listen address, the same state_dir
    second_cfg.write_text(_config(state, receiver))
    try:
        res = await asyncio.to_thread(_onwatch, second_cfg, "run")
        assert res.returncode == 2, res.stderr[-1000:]
        assert f"PID {first.proc.pid}" in res.stderr, res.stderr
        assert str(state) in res.stderr and "Traceback" not in res.stderr
        for args in (("incidents",), ("validate",)):
            ro = await asyncio.to_thread(_onwatch, second_cfg, *args)
            assert ro.returncode == 0, (args, ro.stderr)
        status, _ = await first.get("/healthz")
        assert status == 200  # the first agent never noticed
    finally:
        assert await first.stop() == 0
    # Released on exit: the next agent starts.
    again = await start_agent(_config(state, receiver), tmp_path)
    try:
        assert (state / "onwatch.lock").read_text().strip() == str(again.proc.pid)
    finally:
        assert await again.stop() == 0
        await receiver.close()


async def test_the_lock_dies_with_a_killed_agent(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    first = await start_agent(_config(state, receiver), tmp_path)
    import signal

    await first.stop(signal.SIGKILL)
    again = await start_agent(_config(state, receiver), tmp_path)
    try:
        status, _ = await again.get("/healthz")
        assert status == 200
    finally:
        assert await again.stop() == 0
        await receiver.close()
