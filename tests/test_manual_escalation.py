"""Escalate now and snooze, the console's hands on the escalation planner, on a fake clock.

`escalation.escalate_now` makes the next step due at once (the first step when nothing
was paged yet; the chain's end from the last step); `escalation.snooze` holds every page
until a time and moves every timer by the wait. Both are checked through `plan()`, the
one judge of what is paged when.
"""

from __future__ import annotations

from agent import escalation
from agent.escalation import EscalationState
from agent.incidents import Incident, State
from agent.policy import EscalationStep, Policy
from agent.vocab import Event, Severity

T0 = 1_700_000_000.0
POLICY = Policy(name="shop", steps=(EscalationStep(0.0, ("alice",)),
                                    EscalationStep(1800.0, ("bob",)),
                                    EscalationStep(3600.0, ("carol",))),
                ack_timeout=900.0)
INC = Incident(1, "till", "till is down", Severity.HIGH, State.OPEN, "refused", T0, T0)


def run(state: EscalationState, now: float) -> tuple[EscalationState, list[tuple[str, ...]],
                                                     float | None]:
    p = escalation.plan(INC, state, POLICY, {}, None, None, now)
    return p.state, [pg.contacts for pg in p.pages if pg.event is Event.PAGE], p.wake_at


def test_escalate_now_pages_the_next_step_at_once() -> None:
    st, pages, wake = run(escalation.start(INC), T0)
    assert pages == [("alice",)] and wake == T0 + 900  # bob after the 15 min ack timeout
    pushed = escalation.escalate_now(st, POLICY, T0 + 60)
    assert pushed is not None
    st, pages, wake = run(pushed, T0 + 60)
    assert pages == [("bob",)] and st.step == 1
    assert wake == T0 + 60 + 900  # carol's ack timeout counts from bob's page
    st, pages, _ = run(st, T0 + 60)
    assert pages == []  # planning again at the same time pages nobody twice


def test_escalate_now_before_any_page_pages_the_first_step() -> None:
    late = Policy(name="late", steps=(EscalationStep(600.0, ("alice",)),), ack_timeout=None)
    st = escalation.start(INC)
    assert escalation.plan(INC, st, late, {}, None, None, T0).pages == ()
    pushed = escalation.escalate_now(st, late, T0 + 5)
    assert pushed is not None
    p = escalation.plan(INC, pushed, late, {}, None, None, T0 + 5)
    assert [pg.contacts for pg in p.pages] == [("alice",)]


def test_escalate_now_after_the_chain_ended_has_nothing_to_do() -> None:
    st = EscalationState(base=T0, step=2, step_at=T0, ended=True, reached=2)
    assert escalation.escalate_now(st, POLICY, T0 + 10) is None


def test_snooze_holds_pages_and_moves_every_timer_by_the_wait() -> None:
    st, pages, _ = run(escalation.start(INC), T0)
    assert pages == [("alice",)]
    snoozed = escalation.snooze(st, T0 + 600 + 3600, T0 + 600)  # an hour, from T0+10m
    st2, pages, wake = run(snoozed, T0 + 900)  # bob was due now without the snooze
    assert pages == [] and wake == T0 + 4200
    st3, pages, wake = run(st2, T0 + 4200)  # the snooze is over: the rest keeps its spacing
    assert pages == [] and wake == T0 + 900 + 3600
    _, pages, _ = run(st3, T0 + 4500)
    assert pages == [("bob",)]
