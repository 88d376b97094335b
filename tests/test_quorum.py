"""Agreement between locations (agent/detect/quorum.py), on a fake clock, table-driven."""

from __future__ import annotations

import pytest

from agent.detect import quorum
from agent.detect.outage import Health
from checks.result import CheckResult, ErrorKind

LOCS = ("local", "berlin", "cloud")


def ok(at: float) -> CheckResult:
    return CheckResult(True, 0.01, "ok", None, at)


def bad(at: float) -> CheckResult:
    return CheckResult(False, 0.0, "connection refused", ErrorKind.CONNECT, at)


def feed(vote: quorum.Vote, script: list[tuple[str, str]], *, quorum_n: int = 2,
         confirm: int = 2) -> list[tuple[int, Health]]:
    """Feed (location, "ok"|"bad") runs one second apart; returns (run, verdict) changes."""
    out = []
    for i, (loc, what) in enumerate(script):
        r = ok(float(i)) if what == "ok" else bad(float(i))
        quorum.observe(vote, loc, "shop", r, confirm=confirm, recover=1, now=float(i))
        sig = quorum.verdict(vote, "shop", LOCS, quorum_n, now=float(i))
        if sig is not None:
            out.append((i, sig.kind))
    return out


CASES = [
    ("one location down pages nobody",
     [("berlin", "bad")] * 4 + [("local", "ok"), ("cloud", "ok")], []),
    ("the central alone down pages nobody",
     [("local", "bad")] * 4 + [("berlin", "ok"), ("cloud", "ok")], []),
    ("two confirmed down is down, once",
     [("local", "ok"), ("berlin", "bad"), ("berlin", "bad"), ("cloud", "bad"),
      ("cloud", "bad"), ("cloud", "bad")], [(4, Health.DOWN)]),
    ("an unconfirmed failure does not count",
     [("berlin", "bad"), ("berlin", "bad"), ("cloud", "bad"), ("cloud", "ok")], []),
    ("down, then one recovers below quorum: up",
     [("berlin", "bad"), ("berlin", "bad"), ("cloud", "bad"), ("cloud", "bad"),
      ("cloud", "ok")], [(3, Health.DOWN), (4, Health.UP)]),
]


@pytest.mark.parametrize(("name", "script", "want"), CASES, ids=[c[0] for c in CASES])
def test_verdicts(name: str, script: list[tuple[str, str]], want: list[tuple[int, Health]]
                  ) -> None:
    assert feed(quorum.Vote(), script) == want


def test_reason_names_every_location_and_what_it_saw() -> None:
    vote = quorum.Vote()
    feed(vote, [("local", "ok"), ("berlin", "bad"), ("berlin", "bad"), ("cloud", "bad"),
                ("cloud", "bad")])
    text = quorum.describe(vote, LOCS, 2)
    assert "down from berlin (connection refused), cloud (connection refused)" in text
    assert "up from local" in text and "2 of 3 locations down, quorum 2" in text


def test_outage_starts_at_the_first_failure_of_the_quorum() -> None:
    vote = quorum.Vote()
    script = [("berlin", "bad"), ("berlin", "bad"), ("cloud", "bad"), ("cloud", "bad")]
    for i, (loc, _) in enumerate(script):
        quorum.observe(vote, loc, "shop", bad(10.0 + i), confirm=2, recover=1, now=10.0 + i)
    sig = quorum.verdict(vote, "shop", LOCS, 2, now=13.0)
    assert sig is not None and sig.since == 10.0


def test_a_forgotten_location_neither_keeps_nor_makes_an_outage() -> None:
    vote = quorum.Vote()
    feed(vote, [("berlin", "bad"), ("berlin", "bad")], quorum_n=1)
    assert vote.down
    quorum.forget(vote, "berlin")
    assert quorum.health_at(vote, "berlin") is Health.UNKNOWN
    # Nobody has confirmed it up: the outage stays until a location says so.
    assert quorum.verdict(vote, "shop", LOCS, 1, now=5.0) is None
    quorum.observe(vote, "local", "shop", ok(6.0), confirm=2, recover=1, now=6.0)
    sig = quorum.verdict(vote, "shop", LOCS, 1, now=6.0)
    assert sig is not None and sig.kind is Health.UP


def test_restored_vote_is_down_until_a_location_confirms_up() -> None:
    vote = quorum.restored(100.0)
    assert quorum.verdict(vote, "shop", LOCS, 2, now=101.0) is None
    quorum.observe(vote, "cloud", "shop", ok(102.0), confirm=2, recover=1, now=102.0)
    sig = quorum.verdict(vote, "shop", LOCS, 2, now=102.0)
    assert sig is not None and sig.kind is Health.UP and sig.since == 100.0
