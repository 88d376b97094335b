"""Config edge cases an operator hits: each gets exit 2 and words, never a traceback.

Includes a fuzz test: random mutations of config.example.toml through `onwatch validate`
(in-process, so any exception fails the test) always end in exit 0 or 2.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import cli
from tests.support import ROOT

EXAMPLE = (ROOT / "config.example.toml").read_text()
CONTACT = '[[contacts]]\nname = "ops"\nurls = ["json://127.0.0.1:9/ops"]\n'


def in_process(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`onwatch validate` in this process: any exception fails the test outright."""
    cfg = tmp_path / "onwatch.toml"
    cfg.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["validate", "--config", str(cfg)])
    return subprocess.CompletedProcess([], code, out.getvalue(), err.getvalue())


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "onwatch.toml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-m", "agent", "validate", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("text", [
    "a = " + "[" * 600 + "]" * 600 + "\n",
    "a = " + "{b = " * 600 + "1" + "}" * 600 + "\n",
    "a = " + "[" * 30 + "]" * 30 + "\n",  # parses, but no config needs 30 levels
    "[agent]\nx = " + "[" * 5000 + "\n",  # and unclosed
])
def test_deeply_nested_toml_is_exit_2_with_a_message(tmp_path: Path, text: str) -> None:
    res = validate(tmp_path, text)
    assert res.returncode == 2, res.stderr[-500:]
    assert "Traceback" not in res.stderr
    assert "nested" in res.stderr or "syntax" in res.stderr, res.stderr


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n# and another\n",
                                  '[agent]\nlog_level = "info"\n', '[defaults]\ninterval = "1m"\n'])
def test_a_config_that_watches_nothing_says_so(tmp_path: Path, text: str) -> None:
    res = in_process(tmp_path, text)
    assert res.returncode == 2, res.stdout
    assert "config: checks: nothing to watch" in res.stderr
    assert "[[checks]]" in res.stderr


@pytest.mark.parametrize(("kind", "extra"), [
    ("tcp", "port = 80"), ("tls", ""), ("smtp", ""), ("imap", ""), ("pop3", ""), ("icmp", "")])
@pytest.mark.parametrize("host", ["http://127.0.0.1", "tcp://10.0.0.5", "127.0.0.1:25",
                                  "[::1]", "mail.example.com/path", "smtp://mx.example.com"])
def test_a_host_with_a_scheme_port_or_path_is_refused(tmp_path: Path, kind: str, extra: str,
                                                       host: str) -> None:
    res = in_process(tmp_path, f'{CONTACT}[[checks]]\nname = "x"\ntype = "{kind}"\n'
                             f'host = "{host}"\n{extra}\ncontacts = ["ops"]\n')
    assert res.returncode == 2, res.stdout
    assert 'checks[0] "x": host: ' in res.stderr, res.stderr


def test_an_ipv6_host_and_a_plain_name_are_fine(tmp_path: Path) -> None:
    res = in_process(tmp_path, f'{CONTACT}[defaults]\ncontacts = ["ops"]\n'
                             '[[checks]]\nname = "a"\ntype = "tcp"\nhost = "::1"\nport = 1\n'
                             '[[checks]]\nname = "b"\ntype = "smtp"\nhost = "smtp"\n')
    assert res.returncode == 0, res.stderr


LINES = EXAMPLE.splitlines()
VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True).map(repr),
    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"')
                             .replace("\n", "\\n") + '"'),
    st.sampled_from(["true", "[]", "{}", '""', '"0s"', '"-1s"', '"1e9h"', "[[[]]]", "{a = 1}",
                     '["x", 1]', "1979-05-27T07:32:00Z", "inf", "nan", '"${NOPE}"']),
    st.integers(1, 400).map(lambda n: "[" * n + "]" * n),
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "value", "garbage", "swap", "cut"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "value" and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + draw(VALUES)
        elif op == "garbage":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))] + draw(st.text(max_size=8))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cut":
            lines = lines[:i]
        if not lines:
            break
    return "\n".join(lines) + "\n"


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=mutated())
def test_mutated_example_configs_never_crash_the_loader(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "mutated.toml"
    cfg.write_text(text, encoding="utf-8", errors="surrogatepass")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["validate", "--config", str(cfg)])
    assert code in (0, 2), (code, err.getvalue())
    if code == 2:
        assert "problem" in err.getvalue(), err.getvalue()
    else:
        assert "ok," in out.getvalue()
