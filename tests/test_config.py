"""Config validation, table-driven: one small file per rule, the exact problems it must give.

Each file under tests/configs/invalid/ breaks one rule (many_problems.toml
breaks several); INVALID lists, for each, every problem `load` must report,
word for word and in order. A rule that stopped being checked makes its
file load, and its row fail.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.config import ConfigError, load
from agent.fields import format_duration, parse_duration, show, split_host_port
from checks.registry import KINDS

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs"
INVALID = CONFIGS / "invalid"
VALID = CONFIGS / "valid"

_APPRISE_CANNOT = ('Apprise cannot use this "nosuchservice://" URL (unknown service or missing '
                   'part); see https://github.com/caronc/apprise/wiki')
_LISTEN = 'must be host:port like "127.0.0.1:9847" or "[::1]:9847", got'
_NO_CONTACT = 'no contact named "nobody" (define it under [[contacts]])'

# file stem under tests/configs/invalid/ -> every problem, exactly. "{dir}" is
# that directory, "{kinds}" the registered check types (the list grows).
CASES: dict[str, list[str]] = {
    "unknown_key_top": ['config: unknown key "colour"'],
    "unknown_key_agent": ['agent: unknown key "stat_dir" (did you mean "state_dir"?)'],
    "unknown_key_check": ['checks[0] "web": unknown key "timout" (did you mean "timeout"?)'],
    "unknown_key_contact": ['contacts[0] "ops": unknown key "phone"'],
    "duplicate_check_name": [
        'checks[1] "web": name: duplicate check name "web" (names must be unique)'],
    "duplicate_contact_name": [
        'contacts[1] "ops": name: duplicate contact name "ops" (names must be unique)'],
    "unknown_check_type": ['checks[0] "files": type: unknown check type "ftp"; known: {kinds}'],
    "interval_zero": ['checks[0] "web": interval: must be > 0s, got "0s"'],
    "interval_number": ['checks[0] "web": interval: must be a duration like "10s", got 30'],
    "interval_words": ['defaults: interval: must be a duration like "10s", got "30 seconds"'],
    "timeout_number": [
        'checks[2] "pos-terminal": timeout: must be a duration like "10s", got 10'],
    "timeout_not_shorter": [
        'checks[0] "web": timeout: must be shorter than the interval (10s >= 10s)'],
    "timeout_not_shorter_defaults": [
        "defaults: timeout: must be shorter than the interval (1m >= 5s)"],
    "interval_shorter_than_default_timeout": [
        'checks[0] "web": interval: must be longer than the timeout (5s <= 10s from [defaults])'],
    "url_scheme": ['checks[0] "web": url: must be a URL starting with http:// or https://, '
                   'got "ftp://127.0.0.1/"'],
    "url_no_host": ['checks[0] "web": url: must name a host, got "http:///status"'],
    "url_bad_port": ['checks[0] "web": url: must have a port between 1 and 65535 after the host, '
                     'got "http://127.0.0.1:99999/"'],
    "apprise_unknown_service": [f'contacts[0] "ops": urls[1]: {_APPRISE_CANNOT}'],
    "apprise_not_a_url": ['contacts[0] "ops": urls[0]: is not an Apprise URL '
                          '(expected "scheme://...", e.g. "json://host/path")'],
    "contact_without_urls": [
        'contacts[0] "ops": urls: at least one Apprise URL is needed (urls or urls_file)'],
    "check_missing_contact": [f'checks[0] "web": contacts: {_NO_CONTACT}'],
    "defaults_missing_contact": [f"defaults: contacts: {_NO_CONTACT}"],
    "listen_no_port": [f'agent: listen: {_LISTEN} "127.0.0.1"'],
    "listen_unbracketed_ipv6": [f'agent: listen: {_LISTEN} "::1:9847"'],
    "confirm_range": ['checks[0] "web": confirm: must be between 1 and 20, got 0'],
    "recover_range": ["defaults: recover: must be between 1 and 20, got 21"],
    "severity_bad": [
        'checks[0] "web": severity: must be one of critical, high, low; got "urgent"'],
    "check_without_name": ["checks[0]: name: is required"],
    "check_without_type": ['checks[0] "web": type: is required'],
    "http_without_url": ['checks[0] "web": url: is required'],
    "tcp_without_port": ['checks[0] "pos": port: is required'],
    "env_missing": [
        'contacts[0] "ops": urls[0]: environment variable ONWATCH_TEST_UNSET_TOPIC is not set'],
    "urls_file_unreadable": [
        'contacts[0] "ops": urls_file: cannot read {dir}/no-such.urls: No such file or directory'],
    "urls_file_bad_line": [f'contacts[0] "ops": urls_file: line 4: {_APPRISE_CANNOT}'],
    "syntax_error": ["config: line 3, column 15: TOML syntax error: "
                     "Expected newline or end of document after a statement"],
    "syntax_error_at_end": ["config: line 3 (end of file): TOML syntax error: Unclosed array"],
    "many_problems": [
        f'agent: listen: {_LISTEN} "localhost"',
        'agent: log_level: must be one of debug, info, warning, error; got "verbose"',
        "defaults: confirm: must be between 1 and 20, got 99",
        'checks[0] "web": interval: must be a duration like "10s", got "soon"',
        'checks[0] "web": url: must be a URL starting with http:// or https://, '
        'got "gopher://127.0.0.1/"',
        'checks[1] "web": name: duplicate check name "web" (names must be unique)',
        f'checks[1] "web": contacts: {_NO_CONTACT}',
        'checks[1] "web": port: must be between 1 and 65535, got 0',
        'config: unknown key "typo"',
    ],
}


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.path == str(path)
    return info.value.problems


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ONWATCH_TEST_UNSET_TOPIC", "ONWATCH_TEST_TOKEN", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("stem", sorted(CASES))
def test_invalid_config_reports_exactly(stem: str) -> None:
    expected = [p.replace("{dir}", str(INVALID)).replace("{kinds}", ", ".join(sorted(KINDS)))
                for p in CASES[stem]]
    assert problems_of(INVALID / f"{stem}.toml") == expected


def test_every_invalid_file_is_in_the_table() -> None:
    assert {p.stem for p in INVALID.glob("*.toml")} == set(CASES)


def test_several_problems_come_in_one_error() -> None:
    problems = problems_of(INVALID / "many_problems.toml")
    assert len(problems) == 9
    assert str(len(problems)) + " problem(s)" in str(ConfigError("x", problems))


def test_syntax_errors_name_the_line() -> None:
    for stem in ("syntax_error", "syntax_error_at_end"):
        [problem] = problems_of(INVALID / f"{stem}.toml")
        assert "line 3" in problem


def test_missing_file_is_a_readable_problem(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.toml") == [
        "config: cannot read the file: No such file or directory"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[agent]\nlog_level = "info"\n# caf\xe9\n')
    assert problems_of(path) == ["config: line 3: not UTF-8 text"]


MINIMAL = ('[[contacts]]\nname = "ops"\nurls = ["json://127.0.0.1:9/ops"]\n'
           '[[checks]]\nname = "pos"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'
           'contacts = ["ops"]\n')


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbf[agent]\nlog_level = "warning"\n' + MINIMAL.encode())
    assert load(path).agent.log_level == "warning"


def test_env_var_in_contact_url_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONWATCH_TEST_UNSET_TOPIC", "alerts-7")
    cfg = load(INVALID / "env_missing.toml")
    assert cfg.contacts["ops"].urls == ("ntfy://ntfy.sh/alerts-7",)


# Each value holds the password, and each is wrong in its own way.
SECRET_CONTACTS = {
    "unknown service": 'urls = ["nosuchservice://user:s3cr3t-canary@127.0.0.1/"]',
    "no scheme": 'urls = ["user:s3cr3t-canary@127.0.0.1"]',
    "unparsable": 'urls = ["json://user:s3cr3t-canary@[::1"]',
    "not a string": 'urls = ["json://127.0.0.1:9/", ["json://user:s3cr3t-canary@127.0.0.1/"]]',
    "env missing": 'urls = ["json://user:s3cr3t-canary@127.0.0.1/${ONWATCH_TEST_UNSET_TOPIC}"]',
    "syntax": 'urls = ["json://user:s3cr3t-canary@127.0.0.1/" "x"]',
    "check url": 'urls = ["json://127.0.0.1:9/"]\n[[checks]]\nname = "web"\ntype = "http"\n'
                 'url = "ftp://user:s3cr3t-canary@127.0.0.1/"',
}


@pytest.mark.parametrize("body", SECRET_CONTACTS.values(), ids=SECRET_CONTACTS.keys())
def test_problems_never_quote_a_secret(tmp_path: Path, body: str) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(f'[[contacts]]\nname = "ops"\n{body}\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems
    assert "s3cr3t-canary" not in str(info.value)


def test_urls_file_is_read_relative_to_the_config(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the config's directory
    monkeypatch.setenv("ONWATCH_TEST_TOKEN", "tok-1")
    cfg = load(VALID / "full.toml")
    assert cfg.contacts["ops"].urls == ("json://127.0.0.1:9/tok-1", "json://127.0.0.1:9/from-file")


def test_valid_config_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONWATCH_TEST_TOKEN", "tok-1")
    cfg = load(VALID / "full.toml")

    agent = cfg.agent
    assert agent.state_dir == VALID / "state"
    assert (agent.listen_host, agent.listen_port) == ("::1", 9847)
    assert (agent.max_concurrency, agent.log_level) == (50, "debug")
    assert agent.public_url == "https://onwatch.example.com"

    assert list(cfg.contacts) == ["ops", "owner"]
    assert cfg.contacts["owner"].urls == ("json://127.0.0.1:9/owner",)

    web, pos = cfg.checks
    assert cfg.check("web") is web and cfg.check("nope") is None
    assert (web.type, web.description) == ("http", "The shop's website")
    assert (web.interval, web.timeout, web.recheck_interval) == (5400.0, 90.0, 10.0)
    assert (web.confirm, web.recover, web.severity) == (5, 1, "low")
    assert web.contacts == ("owner", "ops")
    assert web.spec.url == "https://127.0.0.1:8443/health"
    assert web.spec.expect_status == frozenset({200, 204})
    assert web.spec.max_body == 64 * 1024

    # Everything pos-terminal does not set comes from [defaults].
    assert (pos.type, pos.description) == ("tcp", "")
    assert (pos.interval, pos.timeout, pos.recheck_interval) == (120.0, 15.0, 0.5)
    assert (pos.confirm, pos.recover, pos.severity) == (2, 4, "critical")
    assert pos.contacts == ("ops",)
    assert (pos.spec.host, pos.spec.port) == ("::1", 9100)


def test_valid_config_is_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONWATCH_TEST_TOKEN", "tok-1")
    cfg = load(VALID / "full.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.agent.listen_port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.checks[0].interval = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.contacts["x"] = cfg.contacts["ops"]  # type: ignore[index]
    assert isinstance(cfg.checks, tuple) and isinstance(cfg.contacts["ops"].urls, tuple)


def test_built_in_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/onwatch-test:/var/lib/other")
    path = tmp_path / "minimal.toml"
    path.write_text(MINIMAL)
    cfg = load(path)
    assert cfg.agent.state_dir == Path("/var/lib/onwatch-test")
    assert (cfg.agent.listen_host, cfg.agent.listen_port) == ("127.0.0.1", 9847)
    assert cfg.agent.public_url is None
    [pos] = cfg.checks
    assert (pos.interval, pos.timeout, pos.recheck_interval) == (60.0, 10.0, 2.0)
    assert (pos.confirm, pos.recover, pos.severity, pos.contacts) == (4, 2, "high", ("ops",))


def test_example_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load(ROOT / "config.example.toml")
    assert cfg.agent.state_dir == ROOT / "state"
    assert cfg.checks


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9847", ("127.0.0.1", 9847)),
    ("[::1]:9847", ("::1", 9847)),
    ("localhost:0", ("localhost", 0)),
    ("::1:9847", None),
    ("[::1]", None),
    ("127.0.0.1", None),
    ("127.0.0.1:99999", None),
    ("127.0.0.1:9847/", None),
    ("127.0.0.1:9847#x", None),
    ("user@127.0.0.1:9847", None),
    (" 127.0.0.1:9847", None),
    (":9847", None),
])
def test_split_host_port(text: str, expected: tuple[str, int] | None) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30.0), ("1.5s", 1.5), ("15m", 900.0), ("1h30m", 5400.0),
    ("1d", 86400.0), ("30", None), ("30 seconds", None), ("-5s", None), ("", None),
    ("1h 30m", None), ("s", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (1.0, "1s"), (1.5, "1.5s"), (90.0, "1m30s"), (150.0, "2m30s"),
    (3600.0, "1h"), (5400.0, "1h30m"), (86400.0, "24h"),
])
def test_format_duration_is_exact_and_parses_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_show_quotes_values_as_toml() -> None:
    assert show('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert show(["a", 1, True]) == '["a", 1, true]'
    assert show({"a": 1}) == "a table"
