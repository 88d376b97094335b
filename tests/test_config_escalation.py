"""Escalation config: roles, rotations, business hours, policies, routes, with exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load

BASE = """
[agent]
state_dir = "st"
timezone = "Europe/London"
[[contacts]]
name = "alice"
urls = ["json://127.0.0.1:9/a"]
[[contacts]]
name = "owner"
urls = ["json://127.0.0.1:9/o"]
"""

VALID = BASE + """
[business_hours]
hours = ["mon-fri 09:00-17:30", "sat 10:00-14:00"]
holidays = ["2026-12-25"]
[[roles]]
name = "frontline"
[roles.rotation]
contacts = ["alice", "owner"]
start = "2026-01-05 09:00"
every = "7d"
[[policies]]
name = "standard"
ack_timeout = "15m"
ack_expiry = "1h"
resolve_timeout = "4h"
resolve_escalate_to = 2
repeat_every = "5m"
repeat_max = 2
at_end = "restart"
updates = { notify = ["owner"], every = "30m" }
[[policies.steps]]
notify = ["role:frontline"]
when = "business_hours"
[[policies.steps]]
after = "30m"
notify = ["owner"]
[[routes]]
severity = "low"
business_hours_only = true
[[checks]]
name = "web"
type = "http"
url = "http://127.0.0.1/"
policy = "standard"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_valid_escalation_config(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, VALID))
    esc = cfg.escalation
    assert esc.hours is not None and len(esc.hours.windows) == 6
    assert str(esc.hours.tz) == "Europe/London"
    rot = esc.roles["frontline"].rotation
    assert rot is not None and rot.contacts == ("alice", "owner") and rot.shift == 7 * 86400
    pol = esc.policies["standard"]
    assert (pol.ack_timeout, pol.ack_expiry, pol.resolve_timeout) == (900, 3600, 14400)
    assert (pol.resolve_escalate_to, pol.repeat_every, pol.repeat_max) == (1, 300, 2)
    assert [s.after for s in pol.steps] == [0, 1800] and pol.steps[0].when == "business_hours"
    assert pol.updates is not None and pol.updates.notify == ("owner",)
    assert esc.routes[0].business_hours_only and cfg.checks[0].policy == "standard"


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('[agent]\ntimezone = "Mars/Olympus"\n', None),  # handled below (BASE has [agent])
        ('[[policies]]\nname = "p"\n[[policies.steps]]\nnotify = ["frontline"]\n',
         'policies[0] "p": steps[0]: notify: no contact or role named "frontline"'),
        ('[[roles]]\nname = "frontline"\ncontacts = ["alice"]\n[[policies]]\nname = "p"\n'
         '[[policies.steps]]\nnotify = ["frontline"]\n',
         'policies[0] "p": steps[0]: notify: no contact or role named "frontline" '
         '(roles are written "role:NAME")'),
        ('[[policies]]\nname = "p"\n[[policies.steps]]\nnotify = ["alice"]\n'
         'when = "business_hours"\n',
         'policies[0] "p": steps[0]: when: "business_hours" needs a [business_hours] table'),
        ('[[policies]]\nname = "p"\n',
         'policies[0] "p": steps: at least one [[policies.steps]] is needed'),
        ('[[policies]]\nname = "p"\n[[policies.steps]]\nafter = "10m"\nnotify = ["alice"]\n'
         '[[policies.steps]]\nafter = "5m"\nnotify = ["owner"]\n',
         'policies[0] "p": steps[1]: after: steps must be in order of their `after` delays'),
        ('[business_hours]\nhours = ["weekdays 9-5"]\n',
         'business_hours: hours[0]: must read like "mon-fri 09:00-17:30" or "sat,sun 10:00-14:00"'
         ', got "weekdays 9-5"'),
        ('[business_hours]\nhours = ["mon 09:00-17:00"]\nholidays = ["25/12/2026"]\n',
         'business_hours: holidays[0]: must be a date like "2026-12-25", got "25/12/2026"'),
        ('[[roles]]\nname = "r"\n', 'roles[0] "r": contacts: a role needs contacts or a '
         '[roles.rotation]'),
        ('[[roles]]\nname = "r"\n[roles.rotation]\ncontacts = ["zed"]\n',
         'roles[0] "r": rotation: contacts: no contact named "zed"'),
        ('[[routes]]\nseverity = "low"\npolicy = "nope"\n',
         'routes[0]: policy: no policy named "nope" (define it under [[policies]])'),
        ('[[routes]]\nseverity = "low"\nbusiness_hours_only = true\n',
         "routes[0]: business_hours_only: needs a [business_hours] table"),
        ('[[checks]]\nname = "w"\ntype = "http"\nurl = "http://h/"\npolicy = "nope"\n',
         'checks[0] "w": policy: no policy named "nope" (define it under [[policies]])'),
        ('[defaults]\npolicy = "nope"\n',
         'defaults: policy: no policy named "nope" (define it under [[policies]])'),
        ('[[policies]]\nname = "p"\nat_end = "loop"\n[[policies.steps]]\nnotify = ["alice"]\n',
         'policies[0] "p": at_end: must be one of stop, restart; got "loop"'),
    ],
)
def test_escalation_problems(tmp_path: Path, extra: str, problem: str | None) -> None:
    if problem is None:
        text = BASE.replace('timezone = "Europe/London"', 'timezone = "Mars/Olympus"')
        problem = 'agent: timezone: must be an IANA time zone like "Europe/London", ' \
                  'got "Mars/Olympus"'
    else:
        text = BASE + extra
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text))
    assert problem in err.value.problems, err.value.problems


def test_short_api_token_is_refused(tmp_path: Path) -> None:
    text = BASE.replace('timezone = "Europe/London"', 'api_token = "short"')
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text))
    assert err.value.problems == [
        "agent: api_token: must be at least 16 characters (it guards the API)"]
