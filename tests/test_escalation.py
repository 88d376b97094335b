"""The escalation planner, table-driven on a fake clock.

Each scenario is a small script of events at times relative to `t0` ("open",
"ack alice", "resolve", "reopen", "crash", "boot") and the exact list of pages
it must produce (time, event, step, contacts) plus the kinds of the planner's
timeline entries. The driver calls plan() at every event and at every wake_at
(not while "crashed"), like the daemon, and on every call also checks the
invariants: wake_at is in the future, a second call at the same time changes
nothing, and the state survives a JSON round trip (what the store keeps).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent import escalation, incidents
from agent.detect.outage import Health, Signal
from agent.escalation import EscalationState, Page
from agent.incidents import Incident, State
from agent.policy import (
    BusinessHours,
    Opening,
    Policy,
    Role,
    Rotation,
    Route,
    Updates,
)
from agent.policy import (
    EscalationStep as Step,
)
from checks.result import ErrorKind

LONDON = ZoneInfo("Europe/London")


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0,
       tz: dt.tzinfo = LONDON) -> float:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp()


HOURS = BusinessHours(LONDON, tuple(Opening(d, 9 * 60, 17 * 60 + 30) for d in range(5)))
# alice is on call from Monday 4 March 2024 09:00, bob from Monday 11 March 09:00, ...
ROTA = Rotation(("alice", "bob"), dt.datetime(2024, 3, 4, 9, 0, tzinfo=LONDON))
ROLES = {
    "frontline": Role("frontline", rotation=ROTA),
    "manager": Role("manager", ("carol",)),
    "owner": Role("owner", ("dave",)),
    "ops": Role("ops", ("alice", "carol")),
}
MON = ts(2024, 3, 4, 10, 0)         # Monday 10:00, business hours, alice on call
NIGHT = ts(2024, 3, 5, 2, 0)        # Tuesday 02:00

STEPS = (Step(0, ("role:frontline",)), Step(600, ("role:manager",)), Step(1800, ("role:owner",)))
BASIC = Policy("basic", STEPS, ack_timeout=None)
ACK = Policy("ack", STEPS, ack_timeout=300)
ONE = Policy("one", (Step(0, ("role:frontline",)),), ack_timeout=None)
REPEAT = Policy("repeat", ONE.steps, ack_timeout=None, repeat_every=300, repeat_max=2)
BH = Policy("bh", (Step(0, ("role:frontline",), "business_hours"),
                   Step(0, ("role:owner",), "outside_business_hours"),
                   Step(1800, ("role:manager",))), ack_timeout=600)
OWNER_ONLY = Policy("owner-only", (Step(0, ("role:owner",)),), ack_timeout=None)
ERIN = Updates(("erin",), every=1800)


def pol(base: Policy, **kw: Any) -> Policy:
    return replace(base, **kw)


PageAt = tuple[float, str, int, tuple[str, ...]]


@dataclass(frozen=True)
class Sc:
    name: str
    policy: Policy
    script: tuple[tuple[float, str], ...]
    pages: tuple[PageAt, ...]
    kinds: tuple[str, ...] | None = None
    t0: float = MON
    hours: BusinessHours | None = HOURS
    route: Route | None = None
    until: float = 6 * 3600
    #: The planner goes quiet at the end (wake_at None, or the incident is resolved).
    quiet: bool = True


@dataclass
class Run:
    pages: list[PageAt] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    incident: Incident | None = None
    state: EscalationState | None = None
    wake: float | None = None


def drive(sc: Sc, roles: Mapping[str, Role] = ROLES) -> Run:
    run = Run()
    events = sorted(sc.script, key=lambda e: e[0])  # stable: same-time events keep order
    i, down = 0, False

    def record(t: float, pages: tuple[Page, ...]) -> None:
        run.pages += [(round(t - sc.t0, 3), p.event, p.step, p.contacts) for p in pages]
        run.reasons += [p.reason for p in pages]

    for _ in range(200):
        due = [x for x in (events[i][0] + sc.t0 if i < len(events) else None,
                           None if down else run.wake) if x is not None]
        if not due or min(due) > sc.t0 + sc.until:
            break
        now = min(due)
        while i < len(events) and events[i][0] + sc.t0 == now:
            run_event(sc, run, events[i][1], now, record, roles)
            down = {"crash": True, "boot": False}.get(events[i][1], down)
            i += 1
        inc, st = run.incident, run.state
        if down or inc is None or st is None or not inc.is_open:
            continue
        p = escalation.plan(inc, st, sc.policy, roles, sc.hours, sc.route, now)
        record(now, p.pages)
        run.kinds += [e.kind for e in p.entries]
        assert p.wake_at is None or p.wake_at > now, "wake_at must be in the future"
        json.dumps([e.data for e in p.entries])  # the store keeps entries as JSON
        again = escalation.plan(p.incident, p.state, sc.policy, roles, sc.hours, sc.route, now)
        assert (again.pages, again.entries) == ((), ()), "plan() must be idempotent"
        assert (again.state, again.incident, again.wake_at) == (p.state, p.incident, p.wake_at)
        run.state = EscalationState.from_json(json.loads(json.dumps(p.state.to_json())))
        assert run.state == p.state
        run.incident, run.wake = p.incident, p.wake_at
    else:
        raise AssertionError("the planner did not settle in 200 wake-ups")
    return run


def run_event(sc: Sc, run: Run, what: str, now: float,
              record: Callable[[float, tuple[Page, ...]], None], roles: Mapping[str, Role]
              ) -> None:
    verb, _, who = what.partition(" ")
    inc, st = run.incident, run.state
    if verb == "open":
        run.incident = Incident(id=1, check="pos", title="pos is down", severity="high",
                                state=State.OPEN, reason="refused", opened_at=now,
                                started_at=now - 60)
        run.state = escalation.start(run.incident)
    elif verb == "ack":
        assert inc is not None and st is not None
        tr = incidents.acknowledge(inc, now=now, by=who, via="link")
        assert tr is not None, f"ack at {now - sc.t0}: incident is {inc.state}"
        run.incident = tr.incident
        record(now, escalation.on_acknowledged(tr.incident, st, now))
    elif verb == "resolve":
        assert inc is not None and st is not None
        tr = incidents.resolve(inc, now=now, actor="alice", note="fixed")
        assert tr is not None
        run.incident, run.wake = tr.incident, None
        record(now, escalation.on_resolved(tr.incident, st, sc.policy, roles, now))
    elif verb == "reopen":
        assert inc is not None
        sig = Signal(Health.DOWN, "pos", now, now, "refused again", ErrorKind.CONNECT)
        run.incident = incidents.reopen(inc, sig, now=now).incident
        run.state = escalation.start(run.incident, st)
    else:
        assert verb in ("crash", "boot", "tick"), verb


A, B, C, D, E = ("alice",), ("bob",), ("carol",), ("dave",), ("erin",)
ESC3_END = ("escalated", "escalated", "escalated", "end_of_chain")
SAT_NIGHT = ts(2024, 3, 9, 23, 0)
MON_0900 = ts(2024, 3, 11, 9, 0) - SAT_NIGHT           # 34 h later
FRI_1720 = ts(2024, 3, 8, 17, 20)
FRI_TO_MON = ts(2024, 3, 11, 9, 0) - FRI_1720          # when the deferred step goes

SCENARIOS = [
    Sc("step after-delays without ack timeout", BASIC, ((0, "open"),),
       ((0, "page", 0, A), (600, "page", 1, C), (1800, "page", 2, D)), ESC3_END),
    Sc("two steps due at the same instant are both paged",
       Policy("pair", (Step(0, ("role:frontline",)), Step(0, ("role:manager",)),
                       Step(600, ("role:owner",))), ack_timeout=None), ((0, "open"),),
       ((0, "page", 0, A), (0, "page", 1, C), (600, "page", 2, D)), ESC3_END),
    Sc("ack before step 2: step 2 never sent", BASIC,
       ((0, "open"), (300, "ack alice"), (4000, "resolve")),
       ((0, "page", 0, A), (4000, "resolved", -1, A)), ("escalated",)),
    Sc("ack timeout brings step 2 forward", ACK, ((0, "open"),),
       ((0, "page", 0, A), (300, "page", 1, C), (600, "page", 2, D)), ESC3_END),
    Sc("ack after step 2 tells the others, not the acknowledger", ACK,
       ((0, "open"), (400, "ack carol")),
       ((0, "page", 0, A), (300, "page", 1, C), (400, "acknowledged", 1, A))),
    Sc("ack expiry re-triggers and the chain resumes", pol(ACK, ack_expiry=1800),
       ((0, "open"), (100, "ack alice")),
       ((0, "page", 0, A), (1900, "ack_expired", 0, A), (2200, "page", 1, C),
        (2500, "page", 2, D)),
       ("escalated", "ack_expired", *ESC3_END)),
    Sc("resolved after an expired ack: no further pages", pol(ACK, ack_expiry=1800),
       ((0, "open"), (100, "ack alice"), (2000, "ack alice"), (3000, "resolve")),
       ((0, "page", 0, A), (1900, "ack_expired", 0, A), (3000, "resolved", -1, A)),
       ("escalated", "ack_expired", "escalated")),
    Sc("ack before any page, then the ack expires: step 1 paged",
       Policy("late", (Step(300, ("role:frontline",)), Step(900, ("role:manager",))),
              ack_timeout=300, ack_expiry=600),
       ((0, "open"), (0, "ack alice")),
       ((600, "page", 0, A), (900, "page", 1, C)),
       ("ack_expired", "escalated", "escalated", "end_of_chain")),
    Sc("ack expiry after the end of chain re-pages the last step once",
       pol(ACK, ack_expiry=1000), ((0, "open"), (1000, "ack dave")),
       ((0, "page", 0, A), (300, "page", 1, C), (600, "page", 2, D),
        (1000, "acknowledged", 2, ("alice", "carol")), (2000, "ack_expired", 2, D)),
       (*ESC3_END, "ack_expired", "escalated")),
    Sc("resolve timeout jumps to management, the ack stays", pol(ACK, resolve_timeout=3600),
       ((0, "open"), (120, "ack alice"), (5000, "resolve")),
       ((0, "page", 0, A), (3720, "resolve_timeout", 2, D),
        (5000, "resolved", -1, ("alice", "dave"))),
       ("escalated", "escalated")),
    Sc("down through ack expiry and resolve timeout: the ack lapsed first, no management",
       pol(ACK, ack_expiry=1800, resolve_timeout=3600),
       ((0, "open"), (100, "ack alice"), (200, "crash"), (5000, "boot")),
       ((0, "page", 0, A), (5000, "ack_expired", 0, A), (5300, "page", 1, C),
        (5600, "page", 2, D)),
       ("escalated", "ack_expired", *ESC3_END)),
    Sc("down through resolve timeout then ack expiry: both happen, in that order",
       pol(ACK, ack_expiry=1800, resolve_timeout=600),
       ((0, "open"), (100, "ack alice"), (200, "crash"), (5000, "boot")),
       ((0, "page", 0, A), (5000, "resolve_timeout", 2, D), (5000, "ack_expired", 0, A),
        (5300, "page", 1, C), (5600, "page", 2, D)),
       ("escalated", "escalated", "ack_expired", *ESC3_END)),
    Sc("resolve timeout to a chosen step", pol(ACK, resolve_timeout=3600, resolve_escalate_to=1),
       ((0, "open"), (120, "ack alice")),
       ((0, "page", 0, A), (3720, "resolve_timeout", 1, C))),
    Sc("resolved before the resolve timeout: management never paged",
       pol(ACK, resolve_timeout=3600), ((0, "open"), (120, "ack alice"), (3000, "resolve")),
       ((0, "page", 0, A), (3000, "resolved", -1, A))),
    Sc("repeat bounded, then end of chain", REPEAT, ((0, "open"),),
       ((0, "page", 0, A), (300, "repeat", 0, A), (600, "repeat", 0, A)),
       ("escalated", "repeated", "repeated", "end_of_chain")),
    Sc("repeat count resets per step and escalation cuts it off",
       pol(BASIC, repeat_every=250, repeat_max=5), ((0, "open"),),
       ((0, "page", 0, A), (250, "repeat", 0, A), (500, "repeat", 0, A),
        (600, "page", 1, C), (850, "repeat", 1, C), (1100, "repeat", 1, C),
        (1350, "repeat", 1, C), (1600, "repeat", 1, C),
        (1800, "page", 2, D), (2050, "repeat", 2, D), (2300, "repeat", 2, D),
        (2550, "repeat", 2, D), (2800, "repeat", 2, D), (3050, "repeat", 2, D))),
    Sc("repeats stop at the ack timeout of the last step",
       pol(ACK, repeat_every=120, repeat_max=5), ((0, "open"),),
       ((0, "page", 0, A), (120, "repeat", 0, A), (240, "repeat", 0, A),
        (300, "page", 1, C), (420, "repeat", 1, C), (540, "repeat", 1, C),
        (600, "page", 2, D), (720, "repeat", 2, D), (840, "repeat", 2, D))),
    Sc("repeats bounded while the ack timeout is still running",
       pol(ONE, ack_timeout=1000, repeat_every=200, repeat_max=2), ((0, "open"),),
       ((0, "page", 0, A), (200, "repeat", 0, A), (400, "repeat", 0, A)),
       ("escalated", "repeated", "repeated", "end_of_chain")),
    Sc("repeat stops on ack", REPEAT, ((0, "open"), (400, "ack alice")),
       ((0, "page", 0, A), (300, "repeat", 0, A)), ("escalated", "repeated")),
    Sc("business hours skip: at night the frontline is skipped, the owner paged", BH,
       ((0, "open"),), ((0, "page", 1, D), (600, "page", 2, C)),
       ("step_skipped", "escalated", "escalated", "end_of_chain"), t0=NIGHT),
    Sc("business hours: by day the frontline is paged, the night owner step skipped", BH,
       ((0, "open"),), ((0, "page", 0, A), (600, "page", 2, C)),
       ("escalated", "step_skipped", "escalated", "end_of_chain")),
    Sc("business hours after the spring DST change (08:30 UTC is 09:30 BST: open)", BH,
       ((0, "open"),), ((0, "page", 0, B), (600, "page", 2, C)),
       ("escalated", "step_skipped", "escalated", "end_of_chain"),
       t0=ts(2024, 4, 1, 8, 30, tz=dt.UTC)),
    Sc("business hours after the autumn DST change (08:30 UTC is 08:30 GMT: closed)", BH,
       ((0, "open"),), ((0, "page", 1, D), (600, "page", 2, C)),
       ("step_skipped", "escalated", "escalated", "end_of_chain"),
       t0=ts(2024, 10, 28, 8, 30, tz=dt.UTC)),
    Sc("every step skipped: end of chain, nobody paged",
       Policy("day", (Step(0, ("role:frontline",), "business_hours"),), ack_timeout=600),
       ((0, "open"),), (), ("step_skipped", "end_of_chain"), t0=NIGHT),
    Sc("rotation handover mid-incident: the repeat goes to the new on-call",
       pol(ONE, repeat_every=600, repeat_max=3), ((0, "open"), (3000, "resolve")),
       ((0, "page", 0, A), (600, "repeat", 0, A), (1200, "repeat", 0, B),
        (1800, "repeat", 0, B), (3000, "resolved", -1, ("alice", "bob"))),
       ("escalated", "repeated", "repeated", "repeated", "end_of_chain"),
       t0=ts(2024, 3, 11, 8, 45), hours=None),
    Sc("severity route straight to the owner", OWNER_ONLY, ((0, "open"),),
       ((0, "page", 0, D),), ("escalated", "end_of_chain"), route=Route("critical", "owner-only")),
    Sc("business_hours_only route defers a low incident from Saturday night to Monday 09:00",
       pol(ACK, updates=Updates(("erin",), every=3600)),
       ((0, "open"), (MON_0900 + 5000, "resolve")),
       ((MON_0900, "page", 0, B), (MON_0900, "update", -1, E), (MON_0900 + 300, "page", 1, C),
        (MON_0900 + 600, "page", 2, D), (MON_0900 + 3600, "update", -1, E),
        (MON_0900 + 5000, "resolved", -1, ("bob", "carol", "dave", "erin"))),
       ("deferred", "escalated", "stakeholder_update", *ESC3_END[1:], "stakeholder_update"),
       t0=SAT_NIGHT, route=Route("low", business_hours_only=True), until=MON_0900 + 9000),
    Sc("business_hours_only route inside business hours pages at once", BASIC,
       ((0, "open"), (100, "resolve")), ((0, "page", 0, A), (100, "resolved", -1, A)),
       ("escalated",), route=Route("low", business_hours_only=True)),
    Sc("business_hours_only route: a step due after closing waits for Monday", ACK,
       ((0, "open"),),
       ((0, "page", 0, A), (300, "page", 1, C), (FRI_TO_MON, "page", 2, D)),
       ("escalated", "escalated", "deferred", "escalated", "end_of_chain"),
       t0=FRI_1720, route=Route("low", business_hours_only=True), until=FRI_TO_MON + 3600),
    Sc("business_hours_only route: the clock stops at closing, steps keep their spacing",
       pol(BASIC, updates=Updates(("erin",), every=3600)), ((0, "open"),),
       ((0, "page", 0, A), (0, "update", -1, E), (FRI_TO_MON, "page", 1, C),
        (FRI_TO_MON + 1200, "page", 2, D), (FRI_TO_MON + 3000, "update", -1, E)),
       ("escalated", "stakeholder_update", "deferred", *ESC3_END[1:], "stakeholder_update"),
       t0=FRI_1720, route=Route("low", business_hours_only=True), until=FRI_TO_MON + 3600,
       quiet=False),
    Sc("business_hours_only route: a first step due after closing starts the chain Monday",
       Policy("late", (Step(300, ("role:frontline",)),), ack_timeout=None),
       ((0, "open"),), ((FRI_TO_MON - 8 * 60 + 300, "page", 0, B),),  # Mon 09:05
       ("deferred", "escalated", "end_of_chain"),
       t0=FRI_1720 + 8 * 60, route=Route("low", business_hours_only=True),
       until=FRI_TO_MON + 3600),
    Sc("business_hours_only route: an ack timeout running at closing keeps its remainder",
       Policy("two", (Step(0, ("role:frontline",)), Step(3600, ("role:manager",))),
              ack_timeout=900, updates=Updates(("erin",), every=300)), ((0, "open"),),
       ((0, "page", 0, A), (0, "update", -1, E), (300, "update", -1, E),
        (FRI_TO_MON, "update", -1, E), (FRI_TO_MON + 300, "page", 1, C),
        (FRI_TO_MON + 300, "update", -1, E), (FRI_TO_MON + 600, "update", -1, E)),
       ("escalated", "stakeholder_update", "stakeholder_update", "deferred",
        "stakeholder_update", "escalated", "stakeholder_update", "stakeholder_update"),
       t0=FRI_1720, route=Route("low", business_hours_only=True), until=FRI_TO_MON + 700,
       quiet=False),
    Sc("reopen within window: a fresh chain from the reopen time", ACK,
       ((0, "open"), (100, "ack alice"), (200, "resolve"), (500, "reopen"), (2000, "resolve")),
       ((0, "page", 0, A), (200, "resolved", -1, A), (500, "page", 0, A), (800, "page", 1, C),
        (1100, "page", 2, D), (2000, "resolved", -1, ("alice", "carol", "dave"))),
       ("escalated", *ESC3_END)),
    Sc("end of chain: restart, bounded", pol(ACK, at_end="restart", max_restarts=2),
       ((0, "open"),),
       ((0, "page", 0, A), (300, "page", 1, C), (600, "page", 2, D),
        (900, "page", 0, A), (1200, "page", 1, C), (1500, "page", 2, D),
        (1800, "page", 0, A), (2100, "page", 1, C), (2400, "page", 2, D)),
       ("escalated",) * 3 + ("chain_restarted",) + ("escalated",) * 3
       + ("chain_restarted",) + ESC3_END),
    Sc("end of chain restart waits for the first step's delay again",
       Policy("late", (Step(60, ("role:frontline",)), Step(600, ("role:manager",))),
              ack_timeout=300, at_end="restart", max_restarts=1), ((0, "open"),),
       ((60, "page", 0, A), (360, "page", 1, C), (720, "page", 0, A), (1020, "page", 1, C)),
       ("escalated", "escalated", "chain_restarted", "escalated", "escalated",
        "end_of_chain")),
    Sc("a restarted chain counts from the moment it ran out (a skipped last step)",
       Policy("day", (Step(60, ("role:frontline",)),
                      Step(600, ("role:owner",), "outside_business_hours")),
              ack_timeout=None, at_end="restart", max_restarts=1), ((0, "open"),),
       ((60, "page", 0, A), (660, "page", 0, A)),
       ("escalated", "step_skipped", "chain_restarted", "escalated", "step_skipped",
        "end_of_chain")),
    Sc("restart catch-up: only the latest due step is paged", ACK,
       ((0, "open"), (10, "crash"), (700, "boot")),
       ((0, "page", 0, A), (700, "page", 2, D)),
       ("escalated", "step_skipped", "escalated", "end_of_chain")),
    Sc("down before the first plan: every step due, the owner paged once", BASIC,
       ((0, "crash"), (0, "open"), (2000, "boot")), ((2000, "page", 2, D),),
       ("step_skipped", "step_skipped", "escalated", "end_of_chain")),
    Sc("restart catch-up judges `when` at the due time, not at the restart", BH,
       ((0, "crash"), (0, "open"), (300, "boot")), ((300, "page", 0, A), (900, "page", 2, C)),
       ("escalated", "step_skipped", "escalated", "end_of_chain"), t0=ts(2024, 3, 4, 17, 25)),
    Sc("restart with nothing missed pages on schedule", ACK,
       ((0, "open"), (10, "crash"), (200, "boot")),
       ((0, "page", 0, A), (300, "page", 1, C), (600, "page", 2, D)), ESC3_END),
    Sc("crash right after a page: it is not sent again", ACK,
       ((0, "open"), (301, "crash"), (310, "boot")),
       ((0, "page", 0, A), (300, "page", 1, C), (600, "page", 2, D)), ESC3_END),
    Sc("repeats missed while down go as one", pol(REPEAT, repeat_max=3),
       ((0, "open"), (10, "crash"), (1000, "boot")),
       ((0, "page", 0, A), (1000, "repeat", 0, A)), ("escalated", "repeated", "end_of_chain")),
    Sc("stakeholder updates on open, every interval (also acknowledged) and on resolve",
       pol(ONE, updates=ERIN), ((0, "open"), (100, "ack alice"), (4000, "resolve")),
       ((0, "page", 0, A), (0, "update", -1, E), (1800, "update", -1, E),
        (3600, "update", -1, E), (4000, "resolved", -1, ("alice", "erin"))),
       ("escalated", "end_of_chain") + ("stakeholder_update",) * 3),
    Sc("stakeholder updates without an interval: open and resolve only",
       pol(ONE, updates=Updates(("erin",))), ((0, "open"), (500, "resolve")),
       ((0, "page", 0, A), (0, "update", -1, E), (500, "resolved", -1, ("alice", "erin")))),
    Sc("a policy with no steps still sends updates", Policy("news", (), updates=ERIN),
       ((0, "open"), (2000, "resolve")),
       ((0, "update", -1, E), (1800, "update", -1, E), (2000, "resolved", -1, E))),
    Sc("duplicate contacts across roles paged once per page",
       Policy("dup", (Step(0, ("role:frontline", "role:ops", "alice", "carol")),),
              ack_timeout=None), ((0, "open"),), ((0, "page", 0, ("alice", "carol")),)),
    Sc("updates keep the planner awake while open", pol(ONE, updates=ERIN), ((0, "open"),),
       ((0, "page", 0, A), (0, "update", -1, E), (1800, "update", -1, E)),
       until=2000, quiet=False),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(sc: Sc) -> None:
    run = drive(sc)
    assert run.pages == list(sc.pages)
    if sc.kinds is not None:
        assert run.kinds == list(sc.kinds)
    quiet = run.incident is None or not run.incident.is_open or run.wake is None
    assert quiet is sc.quiet


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 30


# -- unit checks the scenario table cannot express ---------------------------------------


def opened(at: float = MON) -> Incident:
    return Incident(id=7, check="pos", title="pos is down", severity="high", state=State.OPEN,
                    reason="refused", opened_at=at, started_at=at)


def test_reasons_and_entries_read_like_a_report() -> None:
    inc = opened()
    first = escalation.plan(inc, escalation.start(inc), ACK, ROLES, HOURS, None, MON)
    assert first.pages == (Page(A, "page", 0, "step 1 of 3 (escalation started)"),)
    assert first.wake_at == MON + 300
    second = escalation.plan(inc, first.state, ACK, ROLES, HOURS, None, MON + 300)
    assert second.pages[0].reason == "step 2 of 3 (ack timeout 5m passed)"
    entry = second.entries[0]
    assert (entry.kind, entry.actor, entry.at) == ("escalated", "onwatch", MON + 300)
    assert entry.message == "paged carol: step 2 of 3 (ack timeout 5m passed)"


def test_reasons_say_why_a_step_came() -> None:
    restart = next(s for s in SCENARIOS if s.name == "end of chain: restart, bounded")
    run = drive(restart)
    assert run.reasons[3] == "step 1 of 3 (chain restarted, 1 of 2)"
    assert run.reasons[4] == "step 2 of 3 (ack timeout 5m passed)"
    late = next(s for s in SCENARIOS if s.name.startswith("ack before any page"))
    assert drive(late).reasons[0] == "step 1 of 2 (acknowledgement expired)"
    basic = drive(SCENARIOS[0])
    assert basic.reasons[1] == "step 2 of 3 (10m after escalation started)"


def test_repeats_missed_while_down_are_capped() -> None:
    policy = pol(ONE, ack_timeout=5000, repeat_every=300, repeat_max=2)
    inc = opened()
    first = escalation.plan(inc, escalation.start(inc), policy, ROLES, HOURS, None, MON)
    p = escalation.plan(inc, first.state, policy, ROLES, HOURS, None, MON + 1000)
    assert [pg.reason for pg in p.pages] == ["step 1 of 1 (repeat 2 of 2, not acknowledged)"]
    assert p.state.repeats == 2 and p.wake_at == MON + 5000


def test_passed_over_step_is_explained() -> None:
    inc = opened()
    p = escalation.plan(inc, escalation.start(inc), BASIC, ROLES, HOURS, None, MON + 700)
    assert [(pg.step, pg.contacts) for pg in p.pages] == [(1, C)]
    skipped = p.entries[0]
    assert skipped.kind == "step_skipped" and skipped.data["cause"] == "passed_over"
    assert "step 1 of 3 passed over" in skipped.message


def test_deferred_entry_names_the_opening() -> None:
    inc = opened(SAT_NIGHT)
    p = escalation.plan(inc, escalation.start(inc), ACK, ROLES, HOURS,
                        Route("low", business_hours_only=True), SAT_NIGHT)
    assert p.pages == () and p.wake_at == ts(2024, 3, 11, 9, 0)
    assert p.state.deferred_until == p.wake_at and p.state.base == p.wake_at
    assert p.entries[0].message.endswith("paging deferred until Mon 11 Mar 09:00 GMT")


def test_resolved_incident_plans_nothing() -> None:
    inc = opened()
    st = escalation.plan(inc, escalation.start(inc), ACK, ROLES, HOURS, None, MON).state
    done = incidents.resolve(inc, now=MON + 10, actor="bob", note="ok")
    assert done is not None
    p = escalation.plan(done.incident, st, ACK, ROLES, HOURS, None, MON + 10)
    assert (p.pages, p.entries, p.wake_at, p.state) == ((), (), None, st)


def test_acknowledged_without_timers_sleeps_for_good() -> None:
    inc = opened()
    st = escalation.plan(inc, escalation.start(inc), ACK, ROLES, HOURS, None, MON).state
    acked = incidents.acknowledge(inc, now=MON + 5, by="alice", via="link")
    assert acked is not None
    p = escalation.plan(acked.incident, st, ACK, ROLES, HOURS, None, MON + 5)
    assert (p.pages, p.wake_at) == ((), None)


def test_expired_ack_returns_the_incident_to_open() -> None:
    policy = pol(ACK, ack_expiry=600)
    inc = opened()
    st = escalation.plan(inc, escalation.start(inc), policy, ROLES, HOURS, None, MON).state
    acked = incidents.acknowledge(inc, now=MON + 5, by="alice", via="link")
    assert acked is not None
    p = escalation.plan(acked.incident, st, policy, ROLES, HOURS, None, MON + 605)
    assert p.incident.state is State.OPEN and p.incident.acknowledged_by is None
    assert p.entries[0].kind == "ack_expired"
    assert p.pages == (Page(A, "ack_expired", 0,
                            "step 1 of 3 (acknowledgement by alice expired after 10m)"),)
    assert p.wake_at == MON + 605 + 300  # the ack timeout counts again from now


def test_on_acknowledged_needs_an_acknowledged_incident() -> None:
    st = EscalationState(base=MON, step=0, paged=("alice", "carol"))
    assert escalation.on_acknowledged(opened(), st, MON) == ()


def test_on_acknowledged_excludes_the_acknowledger() -> None:
    st = EscalationState(base=MON, step=1, paged=("alice", "carol", "dave"))
    inc = incidents.acknowledge(opened(), now=MON + 9, by="carol", via="link")
    assert inc is not None
    assert escalation.on_acknowledged(inc.incident, st, MON + 9) == (
        Page(("alice", "dave"), "acknowledged", 1, "acknowledged by carol"),)
    alone = EscalationState(base=MON, step=0, paged=("carol",))
    assert escalation.on_acknowledged(inc.incident, alone, MON + 9) == ()


def test_on_resolved_skips_stakeholders_never_told() -> None:
    policy = pol(ONE, updates=ERIN)
    inc = incidents.resolve(opened(), now=MON + 60, actor="bob", note="ok")
    assert inc is not None
    never_told = EscalationState(base=MON)  # deferred, then fixed before the opening
    assert escalation.on_resolved(inc.incident, never_told, policy, ROLES, MON + 60) == ()
    told = EscalationState(base=MON, last_update_at=MON, paged=("alice",))
    assert escalation.on_resolved(inc.incident, told, policy, ROLES, MON + 60) == (
        Page(("alice", "erin"), "resolved", -1, "resolved by bob after 1m"),)


def test_state_json_round_trip() -> None:
    st = EscalationState(base=1.5, step=2, step_at=3.25, repeats=1, restarts=1,
                         resolve_escalated=True, ended=True, last_update_at=4.0,
                         paged=("alice", "bob"), deferred_until=9.0, reached=2)
    raw = json.loads(json.dumps(st.to_json()))
    assert raw["paged"] == ["alice", "bob"]
    assert EscalationState.from_json(raw) == st
    # A state written before `reached` existed: the chain stood where it last paged.
    del raw["reached"]
    assert EscalationState.from_json(raw).reached == 2
    assert EscalationState.from_json({"base": 5}) == EscalationState(base=5.0)


def test_start_from_a_reopen_keeps_who_was_paged() -> None:
    inc = opened()
    before = EscalationState(base=MON, step=2, step_at=MON, ended=True, paged=("alice",))
    again = escalation.start(inc, before)
    assert again == EscalationState(base=inc.opened_at, paged=("alice",))
    assert escalation.start(inc) == EscalationState(base=inc.opened_at)
