"""SIGHUP reloads the config of a running agent (a real process): refused or applied, live."""

from __future__ import annotations

import signal
from pathlib import Path

from agent import config as configmod
from agent import reload
from tests.support import Receiver, start_agent, wait_for

DOWN_PORT = 9  # discard: nothing listens there on a test machine


def config(state: Path, receiver: Receiver, *, step2: str = "1h", extra: str = "") -> str:
    return f"""
[agent]
state_dir = "{state}"
listen = "127.0.0.1:0"

[defaults]
interval = "1s"
timeout = "500ms"
confirm = 2
recheck_interval = "100ms"
policy = "standard"

[[contacts]]
name = "frontline"
urls = ["json://127.0.0.1:{receiver.port}/frontline"]

[[contacts]]
name = "owner"
urls = ["json://127.0.0.1:{receiver.port}/owner"]

[[policies]]
name = "standard"
ack_timeout = "off"

[[policies.steps]]
after = "0s"
notify = ["frontline"]

[[policies.steps]]
after = "{step2}"
notify = ["owner"]

[[checks]]
name = "till"
type = "tcp"
host = "127.0.0.1"
port = {DOWN_PORT}
{extra}
"""


def _paths(receiver: Receiver, path: str) -> list[str]:
    return [m["title"] for m in receiver.messages if m["_path"] == path]



async def test_reload_refuses_a_broken_config_and_applies_a_good_one(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    state = tmp_path / "state"
    agent = await start_agent(config(state, receiver), tmp_path)
    try:
        await wait_for(lambda: (_paths(receiver, "/frontline")), 15, "the DOWN page")
        pid = agent.proc.pid
        # Broken: two problems, both logged; the running config stays.
        agent.config.write_text(config(state, receiver).replace('timeout = "500ms"',
                                                                'timeout = "fast"')
                                + '\n[[checks]]\nname = "x"\ntype = "nope"\n')
        agent.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: (agent.events("config_reload_failed")), 10, "the refusal")
        problems = [e["problem"] for e in agent.events("config_reload_problem")]
        assert any("defaults: timeout" in p for p in problems)
        assert any("unknown check type" in p for p in problems)
        assert await agent.metric("onwatch_config_last_reload_successful") == 0.0
        assert agent.proc.returncode is None and agent.proc.pid == pid
        # Good: a check added, the policy's second step now due at once; the incident goes on.
        agent.config.write_text(config(state, receiver, step2="1s", extra=f"""
[[checks]]
name = "receiver"
type = "tcp"
host = "127.0.0.1"
port = {receiver.port}
"""))
        agent.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: (agent.events("config_reloaded")), 10, "the reload")
        assert await agent.metric("onwatch_config_last_reload_successful") == 1.0
        assert agent.events("config_reloaded")[0]["added"] == ["receiver"]
        await wait_for(lambda: agent.metric('onwatch_check_up{check="receiver"}'), 10,
                       "the added check up")
        await wait_for(lambda: (_paths(receiver, "/owner")), 10,
                       "the changed policy's next step")
        # Removed: its open incident is resolved, nothing else pages.
        agent.config.write_text(config(state, receiver, step2="1s").replace(
            'name = "till"', 'name = "till2"').replace(f"port = {DOWN_PORT}",
                                                      f"port = {receiver.port}"))
        agent.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: (len(agent.events("config_reloaded")) == 2), 10,
                       "the second reload")
        await wait_for(lambda: ([t for t in receiver.titles() if "[RESOLVED]" in t]), 10,
                       "the removed check's incident resolved")
    finally:
        code = await agent.stop()
        await receiver.close()
    assert code == 0
    assert len([t for t in _paths(receiver, "/frontline") if t.startswith("[DOWN]")]) == 1
    assert len([t for t in _paths(receiver, "/owner") if t.startswith("[DOWN]")]) == 1


def test_diff_names_what_changed(tmp_path: Path) -> None:
    state, rec = tmp_path / "s", Receiver(port=1)
    old = configmod.parse(_toml(config(state, rec)), tmp_path / "a.toml")
    new = configmod.parse(_toml(config(state, rec, step2="5m", extra="""
[[checks]]
name = "web"
type = "tcp"
host = "127.0.0.1"
port = 2
""").replace('timeout = "500ms"', 'timeout = "600ms"').replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:1"')), tmp_path / "a.toml")
    ch = reload.diff(old, new)
    assert (ch.added, ch.removed, ch.changed) == (("web",), (), ("till",))
    assert ch.needs_restart == ("listen_port",)
    assert "escalation" in ch.other
    kept = reload.keep_start_settings(old, new)
    assert kept.agent.listen_port == 0 and kept.checks == new.checks


def test_a_new_store_or_instance_needs_a_restart(tmp_path: Path) -> None:
    """The store is opened and leadership taken at start: a reload cannot move them."""
    state, rec = tmp_path / "s", Receiver(port=1)
    old = configmod.parse(_toml(config(state, rec)), tmp_path / "a.toml")
    text = config(state, rec).replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\n'
                                      'store = "postgresql://o@127.0.0.1/o"\ninstance = "b"')
    new = configmod.parse(_toml(text), tmp_path / "a.toml")
    assert reload.diff(old, new).needs_restart == ("store", "instance")
    kept = reload.keep_start_settings(old, new)
    assert (kept.agent.store, kept.agent.instance) == (old.agent.store, old.agent.instance)


def _toml(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)
