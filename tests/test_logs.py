"""Error logs carry the real stack trace, from our code and from libraries alike."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import ROOT

SCRIPT = """
import logging, structlog
from agent import logs
logs.configure("info", json=True)
def explode_here():
    raise ValueError("boom")
try:
    explode_here()
except ValueError:
    logging.getLogger("aiohttp.server").exception("Error handling request")
    structlog.get_logger("x").exception("request_failed", path="/api/v1/incidents")
"""


def test_logged_exceptions_show_their_stack_trace() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=30, cwd=ROOT)
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    assert len(lines) == 2, res.stderr
    for line in lines:
        text = json.dumps(line)
        assert "<traceback object" not in text, text
        assert "Traceback (most recent call last)" in line.get("exception", ""), text
        assert "explode_here" in line["exception"] and "ValueError: boom" in line["exception"]
