"""Tenants in the config: [[tenants]], include globs, qualified names, errors naming the file;
and each tenant's business hours driving its own pages (the pure planner, a fake clock)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from agent import config, escalation, incidents, tenancy
from agent.calendar import in_business_hours
from agent.storm import StormGate, StormPolicy
from agent.vocab import Severity

MAIN = """
include = ["clients/*.toml"]
[agent]
state_dir = "state"
timezone = "UTC"
[[contacts]]
name = "staff"
urls = ["json://127.0.0.1:9/staff"]
[[checks]]
name = "shop"
type = "tcp"
host = "127.0.0.1"
port = 9
contacts = ["staff"]

[[tenants]]
name = "acme"
title = "Acme Bakery"
timezone = "Europe/Berlin"
business_hours = { hours = ["mon-fri 09:00-17:00"] }
[[tenants.contacts]]
name = "ana"
urls = ["json://127.0.0.1:9/ana"]
[[tenants.contacts]]
name = "night"
urls = ["json://127.0.0.1:9/anight"]
[[tenants.policies]]
name = "std"
steps = [{ notify = ["ana"], when = "business_hours" },
         { notify = ["night"], when = "outside_business_hours" }]
[[tenants.checks]]
name = "shop"
type = "tcp"
host = "127.0.0.1"
port = 9
policy = "std"
depends_on = ["router"]
[[tenants.checks]]
name = "router"
type = "tcp"
host = "127.0.0.1"
port = 9
policy = "std"
[tenants.status]
host = "status.acme.example"
[[tenants.status.components]]
name = "Online shop"
checks = ["shop"]
"""

BRAVO = """
title = "Bravo Ltd"
timezone = "America/New_York"
business_hours = { hours = ["mon-fri 09:00-17:00"] }
[[contacts]]
name = "bob"
urls = ["json://127.0.0.1:9/bob"]
[[contacts]]
name = "night"
urls = ["json://127.0.0.1:9/bnight"]
[[roles]]
name = "oncall"
contacts = ["bob"]
[[policies]]
name = "std"
steps = [{ notify = ["role:oncall"], when = "business_hours" },
         { notify = ["night"], when = "outside_business_hours" }]
[defaults]
policy = "std"
[[routes]]
severity = "low"
policy = "std"
[[checks]]
name = "shop"
type = "tcp"
host = "127.0.0.1"
port = 9
"""


def _write(tmp: Path, main: str = MAIN, bravo: str = BRAVO) -> Path:
    (tmp / "clients").mkdir(exist_ok=True)
    (tmp / "clients" / "bravo.toml").write_text(bravo)
    path = tmp / "onwatch.toml"
    path.write_text(main)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(config.ConfigError) as exc:
        config.load(path)
    return exc.value.problems


def test_tenants_from_tables_and_included_files(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path))
    assert sorted(cfg.tenants) == ["acme", "bravo"]
    # Three checks called "shop": the provider's, and one per client, kept apart.
    assert [(c.name, c.tenant) for c in cfg.checks] == [
        ("shop", ""), ("acme.shop", "acme"), ("acme.router", "acme"), ("bravo.shop", "bravo")]
    acme_shop = cfg.check("acme.shop")
    assert acme_shop is not None and acme_shop.policy == "acme.std"
    assert acme_shop.depends_on == ("acme.router",)
    assert acme_shop.table["name"] == "acme.shop"  # what a remote probe would be sent
    bravo = cfg.tenants["bravo"]
    assert bravo.title == "Bravo Ltd" and str(bravo.tz) == "America/New_York"
    assert bravo.default_policy == "bravo.std" and bravo.source.name == "bravo.toml"
    steps = cfg.escalation.policies["bravo.std"].steps
    assert steps[0].notify == ("role:bravo.oncall",) and steps[1].notify == ("bravo.night",)
    assert cfg.escalation.roles["bravo.oncall"].contacts == ("bravo.bob",)
    assert [(r.severity, r.policy) for r in bravo.escalation.routes] == [("low", "bravo.std")]
    assert cfg.escalation.routes == ()  # a client's routes are its own incidents' only
    assert set(cfg.contacts) == {"staff", "acme.ana", "acme.night", "bravo.bob", "bravo.night"}
    acme = cfg.tenants["acme"]
    assert acme.title == "Acme Bakery" and acme.host == "status.acme.example"
    assert [(c.name, c.slug, c.checks) for c in acme.status.components] == [
        ("Online shop", "acme--online-shop", ("acme.shop",))]
    assert acme.status.title == "Acme Bakery"
    assert cfg.status.components == ()  # the provider's own page is not the clients'
    assert "5 contacts, 2 tenants (acme, bravo), state in" in cfg.summary()


def test_whose_is_it(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path))
    assert tenancy.of_name(cfg, "acme.shop") == "acme"
    assert tenancy.of_name(cfg, "shop") == tenancy.PROVIDER
    assert tenancy.of_person(cfg, "bravo.bob") == "bravo"
    assert tenancy.of_person(cfg, "staff") is None  # the provider's staff: everything
    assert tenancy.of_person(cfg, "gone") == tenancy.NOBODY  # unknown: nothing
    declared = incidents.declare(new_id=1, title="t", severity=Severity.HIGH, by="x",
                                 reason="r", now=0.0).incident
    assert tenancy.of_incident(cfg, declared) == tenancy.PROVIDER
    assert tenancy.of_incident(cfg, replace(declared, policy="bravo.std")) == "bravo"


def test_problems_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = BRAVO.replace('port = 9\n', 'port = 9\ntimeout = "0s"\n') + "\n[intake]\n"
    problems = _problems(_write(tmp_path, bravo=bad))
    assert any(p.startswith('clients/bravo.toml: checks[0] "shop": timeout:') for p in problems)
    assert ("clients/bravo.toml: intake: is the provider's: set it in the central config, "
            "not in a client's") in problems


def test_a_syntax_error_in_an_included_file(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, bravo="title = \n"))
    assert len(problems) == 1 and problems[0].startswith("clients/bravo.toml: line 1")


def test_unknown_references_and_keys_inside_a_tenant(tmp_path: Path) -> None:
    main = MAIN.replace('policy = "std"\ndepends_on', 'policy = "standard"\ndepends_on')
    main = main.replace('title = "Acme Bakery"', 'title = "Acme Bakery"\ncolour = "red"')
    problems = _problems(_write(tmp_path, main))
    assert ('tenants[0] "acme": checks[0] "shop": policy: no policy named "standard" '
            "(define it under [[policies]])") in problems
    assert any(p.startswith('tenants[0] "acme": unknown key "colour"') for p in problems)


def test_names_and_hosts_that_would_be_ambiguous(tmp_path: Path) -> None:
    main = MAIN.replace('name = "shop"\ntype', 'name = "acme.till"\ntype', 1)
    main += '\n[[tenants]]\nname = "bad.name"\n'
    main += '[[tenants]]\nname = "bravo"\n[tenants.status]\nhost = "status.acme.example"\n'
    problems = _problems(_write(tmp_path, main))
    assert any('"acme.till": names starting with "acme." are tenant "acme"' in p
               for p in problems)
    assert any(p.startswith('tenants[1] "bad.name": name: must be 1-32') for p in problems)
    assert ('clients/bravo.toml: name: duplicate tenant name "bravo" (another is read from '
            "onwatch.toml)") in problems
    assert ('tenants[2] "bravo": status: host: "status.acme.example" is already the status '
            'page of tenant "acme"') in problems


def test_a_missing_include_file(tmp_path: Path) -> None:
    main = MAIN.replace('include = ["clients/*.toml"]', 'include = ["clients/nope.toml"]')
    assert any(p.startswith('config: include[0]: no file "clients/nope.toml"')
               for p in _problems(_write(tmp_path, main)))


def test_each_tenant_pages_by_its_own_business_hours(tmp_path: Path) -> None:
    """Wednesday 10:00 in Berlin is 04:00 in New York: the same policy shape pages
    Acme's day person and Bravo's night person (what the engine passes to the planner)."""
    cfg = config.load(_write(tmp_path))
    now = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()
    paged = {}
    for tenant in ("acme", "bravo"):
        check = cfg.check(f"{tenant}.shop")
        assert check is not None
        inc = incidents.declare(new_id=1, title="down", severity=Severity.HIGH, by="t",
                                reason="r", now=now).incident
        inc = replace(inc, check=check.name, policy=check.policy)
        hours = tenancy.escalation(cfg, tenancy.of_incident(cfg, inc)).hours
        plan = escalation.plan(inc, escalation.start(inc), cfg.escalation.policies[inc.policy],
                               cfg.escalation.roles, hours, None, now)
        paged[tenant] = [c for p in plan.pages for c in p.contacts]
    assert paged == {"acme": ["acme.ana"], "bravo": ["bravo.night"]}
    # Eight hours later Bravo is open (12:00 in New York) and Acme closed (18:00 in Berlin).
    later = now + 8 * 3600
    bravo_hours, acme_hours = (tenancy.escalation(cfg, t).hours for t in ("bravo", "acme"))
    assert bravo_hours is not None and acme_hours is not None
    assert in_business_hours(bravo_hours, later) and not in_business_hours(acme_hours, later)


def test_a_tenant_pages_its_own_people_only(tmp_path: Path) -> None:
    """Storm bundling and its rate limit are kept per recipient, and a client's policies
    can only name the client's own people (or the provider's, as "provider:NAME"): so
    they apply per tenant, and a storm at one client never holds or bundles another's."""
    main = MAIN.replace('{ notify = ["night"], when = "outside_business_hours" }',
                        '{ notify = ["staff", "role:bravo.oncall"] }')
    problems = _problems(_write(tmp_path, main))
    assert 'tenants[0] "acme": policies[0] "std": steps[1]: notify: no contact or role named ' \
           '"staff"' in problems
    assert any('no contact or role named "role:bravo.oncall"' in p for p in problems)
    # The provider's staff are named as such: "provider:staff" pages the provider's "staff".
    escalate = MAIN.replace('{ notify = ["night"], when = "outside_business_hours" }',
                            '{ notify = ["night"], when = "outside_business_hours" },\n'
                            '         { after = "30m", notify = ["provider:staff"] }')
    steps = config.load(_write(tmp_path, escalate)).escalation.policies["acme.std"].steps
    assert steps[2].notify == ("staff",)
    wrong = escalate.replace('"provider:staff"', '"provider:nobody"')
    assert any('steps[2]: notify: no contact or role named "provider:nobody"' in p
               for p in _problems(_write(tmp_path, wrong)))
    cfg = config.load(_write(tmp_path))
    gate = StormGate(StormPolicy(threshold=2, window=60.0, interval=60.0))
    for at in (0.0, 1.0):
        gate.sent("acme.ana", at)
    assert gate.decide("acme.ana", 1, 2.0)[0] == "hold"  # Acme's person is in a storm
    bravo_people = {t for s in cfg.escalation.policies["bravo.std"].steps for t in s.notify}
    assert all(tenancy.of_name(cfg, t.removeprefix("role:")) == "bravo" for t in bravo_people)
    assert gate.decide("bravo.bob", 1, 2.0)[0] == "each"  # Bravo's pages go out one by one


def test_the_examples_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml with its [[tenants]] block uncommented and
    deploy/clients.example/*.toml included: a provider's layout that loads."""
    monkeypatch.setenv("SMTP_PASSWORD", "example")  # the example's mail URL reads it
    import re

    from tests.support import ROOT

    text = (ROOT / "config.example.toml").read_text()
    block = re.search(r"# --- a tenant.*?\n(.*?)# --- end of a tenant", text, re.S)
    assert block is not None
    tenant = "\n".join(line.removeprefix("# ") for line in block[1].splitlines())
    pattern = str(ROOT / "deploy" / "clients.example" / "*.toml")
    text = text.replace("include = []", f"include = [{pattern!r}]", 1) + "\n" + tenant
    path = tmp_path / "onwatch.toml"
    path.write_text(text)
    cfg = config.load(path)
    assert sorted(cfg.tenants) == ["acme", "bravo"]
    assert cfg.check("acme.shop") is not None and cfg.check("bravo.till") is not None
    assert cfg.tenants["acme"].host == "status.acme.example"


def test_a_reload_that_changes_a_client(tmp_path: Path) -> None:
    from agent import reload

    old = config.load(_write(tmp_path))
    new = config.load(_write(tmp_path, bravo=BRAVO.replace('title = "Bravo Ltd"',
                                                           'title = "Bravo Limited"')))
    changes = reload.diff(old, new)
    assert "tenants" in changes.other and changes.needs_restart == ("tenants.status",)
    added = config.load(_write(tmp_path, bravo=BRAVO + '\n[[checks]]\nname = "till"\n'
                               'type = "tcp"\nhost = "127.0.0.1"\nport = 9\n'))
    assert reload.diff(old, added).added == ("bravo.till",)


def test_a_clients_maintenance_windows_cover_its_own_checks(tmp_path: Path) -> None:
    main = MAIN.replace('policy = "std"\ndepends_on', 'policy = "std"\ntags = ["pos"]\ndepends_on')
    bravo = BRAVO.replace('port = 9\n', 'port = 9\ntags = ["pos"]\n') + (
        '\n[[maintenance]]\ntags = ["pos"]\nweekly = ["sun 02:00-04:00"]\n')
    cfg = config.load(_write(tmp_path, main, bravo))
    (window,) = cfg.maintenance
    # Acme's shop carries the tag too: the client's window is over the client's checks.
    assert window.id == "bravo:config:0" and window.checks == {"bravo.shop"} and not window.tags
    assert window.weekly is not None and str(window.weekly.tz) == "America/New_York"
    wrong = BRAVO + '\n[[maintenance]]\nchecks = ["till"]\nweekly = ["sun 02:00-04:00"]\n'
    assert 'clients/bravo.toml: maintenance[0]: checks: no check named "till"' in _problems(
        _write(tmp_path, bravo=wrong))


def test_a_client_may_set_its_own_storm_limits(tmp_path: Path) -> None:
    bravo = BRAVO + '\n[notifications]\nstorm_threshold = 2\nstorm_interval = "5m"\n'
    cfg = config.load(_write(tmp_path, bravo=bravo))
    assert dict(cfg.tenants["bravo"].storm) == {"threshold": 2, "interval": 300.0}
    assert dict(cfg.tenants["acme"].storm) == {}
    base = StormPolicy(threshold=5, window=60.0, interval=60.0)
    per = {name: base.but(t.storm) for name, t in cfg.tenants.items()}
    gate = StormGate(base, lambda who: per.get(tenancy.of_name(cfg, who), base))
    for at in (0.0, 1.0):
        gate.sent("bravo.bob", at)
        gate.sent("acme.ana", at)
    assert gate.decide("bravo.bob", 1, 2.0) == ("hold", 301.0)  # Bravo's own limit: 2
    assert gate.decide("acme.ana", 1, 2.0)[0] == "each"  # Acme keeps the provider's 5
    other = BRAVO + '\n[notifications]\nretry_cap = "1m"\n'
    assert ('clients/bravo.toml: notifications: unknown key "retry_cap" (a client\'s '
            "[notifications] sets storm_threshold, storm_window and storm_interval only; the "
            "rest is the provider's)") in _problems(_write(tmp_path, bravo=other))


def test_a_pattern_matching_the_central_config_skips_it(tmp_path: Path) -> None:
    path = _write(tmp_path, MAIN.replace('include = ["clients/*.toml"]',
                                         'include = ["*.toml", "clients/*.toml"]'))
    assert sorted(config.load(path).tenants) == ["acme", "bravo"]
