"""Config of remote probes, as an operator meets it: a check's locations/quorum,
[probes], `include` in the wrong place, and probe.toml itself (`onwatch validate
probe.toml`, `onwatch probe add` printing a probe.toml, `onwatch probe --config`
given the central's file). Each broken file's problem names the key and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import probe_wire
from agent.cli import main
from agent.config import ConfigError, load

BASE = """
[agent]
state_dir = "state"
listen = "127.0.0.1:9"

[[contacts]]
name = "ops"
urls = ["json://127.0.0.1:9/ops"]

[[policies]]
name = "p"
steps = [{ notify = ["ops"] }]

[defaults]
policy = "p"
"""
CHECK = '\n[[checks]]\nname = "web"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'

# what is appended to BASE (after CHECK when the row says so) -> the one problem
CASES = [
    ("[probes]\nunreachable_after = \"soon\"\n", False,
     'probes: unreachable_after: must be a duration like "10s", got "soon"'),
    ("[probes]\nunreachable = \"2m\"\n", False,
     'probes: unknown key "unreachable" (did you mean "unreachable_after"?)'),
    ("[probes]\npolicy = \"nope\"\n", False,
     'probes: policy: no policy named "nope" (define it under [[policies]])'),
    ('locations = ["local", "p1"]\nquorum = 3\n', True,
     'checks[0] "web": quorum: must be between 1 and 2, got 3'),
    ('locations = ["p1", "p1"]\n', True,
     'checks[0] "web": locations: names a location twice: ["p1", "p1"]'),
    ("locations = []\n", True,
     'checks[0] "web": locations: must name at least one location ("local" is this agent)'),
    ("quorum = 2\n", True,
     'checks[0] "web": quorum: needs locations to agree: give the check locations = '
     '["local", "<probe>", ...] (now ["local"]), or drop quorum'),
    ('include = ["clients/*.toml"]\n', False,
     'defaults: unknown key "include" (include is a top-level key: move it above the first '
     '[table])'),
]


@pytest.mark.parametrize(("extra", "in_check", "problem"), CASES)
def test_a_broken_probe_key_names_itself(tmp_path: Path, extra: str, in_check: bool,
                                         problem: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + CHECK + extra if in_check else BASE + extra + CHECK)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.problems == [problem]


def test_quorum_1_without_locations_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + CHECK + "quorum = 1\n")
    assert load(path).checks[0].quorum == 1


def _probe_toml(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "probe.toml"
    path.write_text(f'[probe]\nname = "p1"\ncentral = "http://127.0.0.1:9"\nkey = "{key}"\n'
                    f'state_dir = "pstate"\n')
    return path


def test_validate_reads_a_probe_toml_as_the_probe_does(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    key = probe_wire.format_key(1, probe_wire.derive_key(b"s" * 32, "p1", 1))
    assert main(["validate", str(_probe_toml(tmp_path, key))]) == 0
    out = capsys.readouterr().out
    assert "ok, probe p1 reporting to http://127.0.0.1:9, state in" in out
    assert main(["validate", str(_probe_toml(tmp_path, "abc"))]) == 2
    err = capsys.readouterr().err
    assert "probe.toml: probe: key: not a probe key" in err and "onwatch probe add" in err


def test_the_probe_given_the_central_config_says_which_file_it_needs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    central = tmp_path / "config.toml"
    central.write_text(BASE + CHECK)
    assert main(["probe", "--config", str(central)]) == 2
    err = capsys.readouterr().err
    assert "this is a central onwatch config, not a probe's" in err
    assert "deploy/probe.example.toml" in err
    assert err.count("\n") == 1  # one line, not every central table as an unknown key


def test_probe_add_prints_a_probe_toml_that_points_at_this_agent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    central = tmp_path / "config.toml"
    central.write_text(BASE + CHECK + 'locations = ["local", "p1"]\n')
    assert main(["probe", "add", "p1", "--config", str(central)]) == 0
    out = capsys.readouterr().out
    assert "Checks at this location: web." in out
    assert 'central = "http://127.0.0.1:9"' in out  # no public_url: where it listens
    printed = tmp_path / "printed.toml"
    printed.write_text(out[out.index("[probe]"):].replace("/var/lib/onwatch-probe", "ps"))
    assert main(["validate", str(printed)]) == 0
    capsys.readouterr()
    central.write_text(BASE.replace("[agent]\n", '[agent]\npublic_url = "https://ow.example"\n')
                       + CHECK)
    assert main(["probe", "add", "p2", "--config", str(central)]) == 0
    assert 'central = "https://ow.example"' in capsys.readouterr().out


def test_the_agent_given_a_probe_toml_points_at_onwatch_probe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _probe_toml(tmp_path, "abc")
    assert main(["run", "--config", str(path)]) == 2
    assert f"this is a remote probe's file: run it with `onwatch probe --config {path}`" in \
        capsys.readouterr().err
