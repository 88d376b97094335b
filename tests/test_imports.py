"""The pure core imports nothing heavy: each pure module, in a fresh interpreter.

A pure module (detection, incidents, escalation, storm bundling, the result and record
types) must not load aiohttp, Apprise, psutil, dnspython or sqlite3, directly or
through what it imports. Each is imported alone in a new interpreter, which then
reports every heavy module in `sys.modules` and the chain of imports that pulled it
in ("agent.detect.x -> agent.config -> checks.registry -> checks.http"), so that a
failure names the line to fix. Every module file of agent/detect/ is covered, a new
one included, without being listed here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("aiohttp", "apprise", "psutil", "dns", "sqlite3")

DETECT = sorted(f"agent.detect.{p.stem}" for p in (ROOT / "agent" / "detect").glob("*.py")
                if p.stem != "__init__")
PURE = ["agent.escalation", "agent.escalation_state", "agent.incidents", "agent.storm",
        "agent.triage", "agent.vocab", "agent.policy", "agent.calendar", "notifiers.messages",
        "agent.detect", *DETECT, "checks.result", "agent.store.records",
        "agent.intake", "agent.alerts", "agent.config_intake"]

# Run in the fresh interpreter: a finder that only watches (it finds nothing itself)
# records, for the first import of each heavy package, the modules whose top-level
# code was running at the time -- the chain that pulled it in.
_REPORT = """
import importlib, sys

HEAVY = set(sys.argv[2].split(","))
chains = {}

class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in chains:
            frame, chain = sys._getframe(1), []
            while frame is not None:
                if frame.f_code.co_name == "<module>":
                    chain.append(frame.f_globals.get("__name__", "?"))
                frame = frame.f_back
            chains[top] = " -> ".join(m for m in reversed(chain) if m != "__main__")
        return None

already = {h for h in HEAVY if h in sys.modules}
sys.meta_path.insert(0, Watch())
importlib.import_module(sys.argv[1])
for heavy in sorted(HEAVY):
    if heavy in sys.modules:
        how = "loaded before the import" if heavy in already else chains.get(heavy, "?")
        print(f"{heavy}: {how} -> {heavy}")
"""


def heavy_imports(module: str) -> list[str]:
    """One line per heavy module that importing `module` loads, with its import chain."""
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT, module, ",".join(HEAVY)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"importing {module} failed:\n{proc.stderr}"
    return proc.stdout.splitlines()


def test_every_detect_module_is_covered() -> None:
    assert "agent.detect.outage" in DETECT and len(DETECT) >= 5


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_nothing_heavy(module: str) -> None:
    offenders = heavy_imports(module)
    assert offenders == [], f"{module} imports heavy modules:\n" + "\n".join(offenders)


def test_the_report_names_what_pulls_a_heavy_module() -> None:
    # The kind registry is the shell's and imports every probe: the report must say so,
    # with the chain, or the tests above could not fail.
    offenders = heavy_imports("checks.registry")
    chains = dict(line.split(": ", 1) for line in offenders)
    assert {"aiohttp", "psutil", "dns"} <= chains.keys()
    assert chains["psutil"].startswith("checks.registry -> checks.host")
    assert chains["aiohttp"].startswith("checks.registry -> ")
