"""The escalation planner. Pure: no I/O, no clock; the time is an argument.

`plan(incident, state, policy, roles, hours, route, now)` returns the pages due
now, the timeline entries that explain them, the new `EscalationState` (all
that must survive `kill -9`) and `wake_at`. The runner persists it all before
sending and calls `plan` again at `wake_at` or when the incident changes. A
second call at the same `now` with the returned state does nothing; `wake_at`
is after `now`, or None when nothing can happen any more.

Semantics (where the issue is silent, as PagerDuty / Grafana OnCall do it):
- Step k is due at `base + after_k` (base: opened_at, the reopen time, a chain
  restart, a business-hours opening); with `ack_timeout`, once step k-1 was
  paged at t and nobody acknowledged, at min(base + after_k, t + ack_timeout).
- Catch-up (after a restart): the chain is replayed at the times things would
  have happened; only the most senior step that fell due is paged (with any
  due at the same instant), with a full ack window from now; the earlier ones
  are recorded as passed over. A step already paged is never paged again.
- A step whose `when` does not hold at its due time is skipped; the next is
  considered at once on its own timing (its `after`, or the ack timeout of the
  last step actually paged). Without a calendar every `when` holds.
- Acknowledged: no pages, repeats or escalation; updates go on. At ack +
  `resolve_timeout`, step `resolve_escalate_to` is paged once per incident
  (its `when` ignored: management is engaged on purpose); the ack stays, the
  chain does not move. At ack + `ack_expiry` the incident is open again
  (`incidents.unacknowledge`) and the last paged step is paged again at once
  (step 0 by the normal path if none was); the chain resumes from it (base
  moves so its `after` is now; the ack timeout counts from now). An ended
  chain re-pages its last step and stays ended.
- Repeat: while open, the last paged step is re-paged every `repeat_every`
  from its page, at most `repeat_max` times, the count reset by a new step.
  Repeats missed while down go as one. Repeats ignore `when` (a reminder).
- End of chain: at last page + ack_timeout; without one, once the repeats are
  spent (+ (repeat_max + 1) * repeat_every); without either, at once. "stop":
  an `end_of_chain` entry, nothing more. "restart": the chain starts again
  with base = that moment, at most `max_restarts` times, then stops.
- Updates: the `policy.updates` audience gets an "update" on the first plan
  (opened; a reopen starts a fresh state), then every `every` while open or
  acknowledged, and the resolution (on_resolved). They are not in `paged`.
- `business_hours_only` route: if a plan outside business hours would send
  anything (updates too: the route means "disturb nobody now"), nothing is
  sent; `deferred_until` = the next opening, one `deferred` entry, and every
  timer moves forward by the wait: what was due goes at the opening, the rest
  keeps its spacing; before the first page the chain starts at the opening
  (base = opening). Ack expiry and resolve timeout run in real time from the
  ack, so if they lapsed meanwhile they act at the opening.
- Targets are resolved when each page is made (a rotation handover pages the
  new person); a contact is paged once per page.
- Reopen: the caller starts a fresh chain at the reopen time with
  `start(incident, previous)`, which keeps who was paged: all who heard of
  the first episode hear the final resolution.
- on_resolved tells everyone paged, plus the updates audience if it was ever
  told; on_acknowledged tells everyone paged but the acknowledger.

Timeline entry kinds: escalated (data.event: page, ack_expired,
resolve_timeout), repeated, step_skipped (data.cause: when, passed_over),
chain_restarted, end_of_chain, deferred, stakeholder_update, and ack_expired
(from `incidents.unacknowledge`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agent import incidents
from agent.calendar import in_business_hours, next_opening, resolve_targets
from agent.escalation_state import EscalationState, Page, Plan
from agent.incidents import Incident, State, TimelineEntry
from agent.policy import BusinessHours, Policy, Role, Route
from agent.vocab import Entry, Event

ACTOR = "onwatch"

__all__ = ["EscalationState", "Page", "Plan", "escalate_now", "on_acknowledged", "on_resolved",
           "plan", "snooze", "start", "unreachable"]


def start(incident: Incident, previous: EscalationState | None = None) -> EscalationState:
    """A fresh chain from the incident's (re)open time; `previous` keeps who was paged."""
    return EscalationState(base=incident.opened_at,
                           paged=previous.paged if previous is not None else ())


def unreachable(state: EscalationState, now: float) -> EscalationState:
    """Somebody paged by the current step could not be reached on any channel:
    waiting for their acknowledgement is pointless, so the next step is due now."""
    if state.step < 0 or state.ended:
        return state
    return replace(state, unreachable_at=now)


def escalate_now(state: EscalationState, policy: Policy, now: float) -> EscalationState | None:
    """A person asked for the next step now (the console's "escalate now"): the next
    step is due at `now` (or the chain's end, from the last step); a snooze or a
    business-hours deferral is lifted. None when there is no next step to page."""
    if state.ended or not policy.steps:
        return None
    state = replace(state, deferred_until=None)
    if state.step < 0:  # nothing paged yet: the first step to consider is due now
        k = min(state.reached + 1, len(policy.steps) - 1)
        return replace(state, base=now - policy.steps[k].after)
    return replace(state, unreachable_at=now)


def snooze(state: EscalationState, until: float, now: float) -> EscalationState:
    """No pages, repeats or updates before `until`; every timer moves by the wait, as a
    business-hours deferral does (what was due goes at `until`, the rest keeps its
    spacing). Acknowledgement expiry and the resolve timeout keep real time."""
    shift = max(0.0, until - max(now, state.deferred_until or now))
    return replace(state, deferred_until=until, base=state.base + shift,
                   step_at=None if state.step_at is None else state.step_at + shift,
                   last_update_at=(None if state.last_update_at is None
                                   else state.last_update_at + shift))


def plan(incident: Incident, state: EscalationState, policy: Policy, roles: Mapping[str, Role],
         hours: BusinessHours | None, route: Route | None, now: float) -> Plan:
    if not incident.is_open:
        return Plan(state, incident, (), (), None)
    if state.deferred_until is not None:
        if now < state.deferred_until:
            return Plan(state, incident, (), (), state.deferred_until)
        state = replace(state, deferred_until=None)
    out = _Planner(incident, state, policy, roles, hours, now).run()
    if ((out.pages or out.incident is not incident) and route is not None
            and route.business_hours_only and hours is not None
            and not in_business_hours(hours, now)):
        return _defer(incident, state, hours, route, now) or out
    return out


def on_resolved(incident: Incident, state: EscalationState, policy: Policy,
                roles: Mapping[str, Role], now: float) -> tuple[Page, ...]:
    who = dict.fromkeys(state.paged)
    # Stakeholders never told it opened (a deferred incident) need no "it is over".
    if policy.updates is not None and state.last_update_at is not None:
        who.update(dict.fromkeys(resolve_targets(policy.updates.notify, roles, now)))
    if not who:
        return ()
    by = f" by {incident.resolved_by}" if incident.resolved_by else ""
    reason = f"resolved{by} after {_dur(now - incident.opened_at)}"
    return (Page(tuple(who), Event.RESOLVED, -1, reason),)


def on_acknowledged(incident: Incident, state: EscalationState, now: float
                    ) -> tuple[Page, ...]:
    others = tuple(c for c in state.paged if c != incident.acknowledged_by)
    if incident.state is not State.ACKNOWLEDGED or not others:
        return ()
    return (Page(others, Event.ACKNOWLEDGED, state.step,
                 f"acknowledged by {incident.acknowledged_by}"),)


class _Planner:
    """One plan() call: accumulates pages, entries and wake-up candidates."""

    def __init__(self, incident: Incident, state: EscalationState, policy: Policy,
                 roles: Mapping[str, Role], hours: BusinessHours | None, now: float) -> None:
        self.inc, self.st, self.policy = incident, state, policy
        self.roles, self.hours, self.now = roles, hours, now
        self.steps = policy.steps
        self.pages: list[Page] = []
        self.entries: list[TimelineEntry] = []
        self.wakes: list[float] = []
        self.hint: str | None = None  # why the next step is due, when its timing cannot say

    def run(self) -> Plan:
        if self.inc.state is State.ACKNOWLEDGED:
            self._acknowledged()
        if self.inc.state is State.OPEN and self.steps and not self.st.ended:
            self._chain()
            if not self.st.ended:  # a step paged just now has its repeats counted from now
                self._repeat()
        self._updates()
        wake = min((w for w in self.wakes if w > self.now), default=None)
        return Plan(self.st, self.inc, tuple(self.pages), tuple(self.entries), wake)

    def _acknowledged(self) -> None:
        p, at, inf = self.policy, self.inc.acknowledged_at, math.inf
        if at is None:
            return
        expires = inf if p.ack_expiry is None else at + p.ack_expiry
        escalate = (inf if p.resolve_timeout is None or not self.steps
                    or self.st.resolve_escalated else at + p.resolve_timeout)
        # Only a resolve timeout that fell due while the ack still held counts.
        if escalate <= self.now and escalate < expires:
            n, k = len(self.steps), p.resolve_escalate_to  # -1 = the last step
            k = min(max(k + n if k < 0 else k, 0), n - 1)
            self._page(k, Event.RESOLVE_TIMEOUT, f"acknowledged by {self.inc.acknowledged_by} "
                                             f"{_dur(self.now - at)} ago, not resolved")
            self.st, escalate = replace(self.st, resolve_escalated=True), inf
        if expires <= self.now:
            self._expire()
            return
        self.wakes += [w for w in (escalate, expires) if w < inf]

    def _expire(self) -> None:
        assert self.policy.ack_expiry is not None
        why = (f"acknowledgement by {self.inc.acknowledged_by} expired after "
               f"{_dur(self.policy.ack_expiry)}")
        tr = incidents.unacknowledge(self.inc, now=self.now, reason=f"{why}; escalation resumes")
        assert tr is not None  # the caller checked it is acknowledged
        self.inc, k = tr.incident, self.st.step
        self.entries += tr.entries
        if not self.steps:
            return
        # The chain resumes where it stood: that step's `after` is now, the rest keep spacing.
        self.st = replace(self.st, base=self.now - self.steps[max(k, 0)].after,
                          step_at=self.now if k >= 0 else None, repeats=0)
        if k >= 0:
            self._page(k, Event.ACK_EXPIRED, why)
        else:
            self.hint = "acknowledgement expired"

    def _chain(self) -> None:
        """Replay the chain up to now (catch-up after a restart) and page what is due."""
        p, now, n, st = self.policy, self.now, len(self.steps), self.st
        base, reached, restarts = st.base, st.reached, st.restarts
        paged_at, skip_at = st.step_at, -math.inf  # last page in this pass; last skip
        latest: tuple[int, float] | None = None  # the last step due (paged now if any)
        log: list[tuple[str, int, float, str]] = []  # (what, step, due, cause) in order
        restarted_last = ended = False
        for _ in range((n + 2) * (p.max_restarts + 2)):
            k = reached + 1
            if k < n:
                due, cause = self._due(k, base, paged_at)
                if due > now:
                    # The replay used the hypothetical page time; the state keeps the real one.
                    self.wakes.append(self._due(k, base, now)[0] if latest else due)
                    break
                reached = k
                if self._when(self.steps[k].when, due):
                    cause, self.hint, latest = self.hint or cause, None, (k, due)
                    log.append(("page", k, due, cause))
                    paged_at, skip_at, restarted_last = due, -math.inf, False
                else:
                    log.append(("skip", k, due, ""))
                    skip_at = due
                continue
            # End of chain. A step paged in this call gets its full window from now.
            last = now if latest else paged_at
            end = max(now if last is None else self._end_due(last), skip_at)
            if end > now:
                self.wakes.append(end)
                break
            if p.at_end == "restart" and restarts < p.max_restarts:
                restarts += 1
                base, reached, paged_at, skip_at, restarted_last = end, -1, None, -math.inf, True
                self.hint = f"chain restarted, {restarts} of {p.max_restarts}"
                log.append(("restart", n - 1, end, f"{restarts} of {p.max_restarts}"))
                continue
            ended = True
            log.append(("end", n - 1, end, ""))
            break
        self.st = replace(self.st, base=base, reached=reached, restarts=restarts, ended=ended)
        if restarted_last:
            self.st = replace(self.st, step=-1, step_at=None, repeats=0, unreachable_at=None)
        elif latest:
            self.st = replace(self.st, step=latest[0], step_at=now, repeats=0,
                              unreachable_at=None)
        for what, k, due, cause in log:
            self._log(what, k, due, cause, latest[1] if latest else None)

    def _due(self, k: int, base: float, paged_at: float | None) -> tuple[float, str]:
        after = self.steps[k].after
        due, cause = base + after, (f"{_dur(after)} after escalation started" if after
                                    else "escalation started")
        timeout = self.policy.ack_timeout
        if timeout is not None and paged_at is not None and paged_at + timeout < due:
            due, cause = paged_at + timeout, f"ack timeout {_dur(timeout)} passed"
        u = self.st.unreachable_at
        if u is not None and k == self.st.step + 1 and u < due:
            due, cause = u, f"step {k} could not be delivered to everybody"
        return due, cause

    def _end_due(self, last: float) -> float:
        p = self.policy
        if self.st.unreachable_at is not None:
            return self.st.unreachable_at
        if p.ack_timeout is not None:
            return last + p.ack_timeout
        if p.repeat_every and p.repeat_max > 0:
            return last + (p.repeat_max + 1) * p.repeat_every
        return last

    def _log(self, what: str, k: int, due: float, cause: str, latest: float | None) -> None:
        n, p = len(self.steps), self.policy
        if what == "page" and due == latest:
            self._page(k, Event.PAGE, cause)
        elif what in ("page", "skip"):
            why = (f"passed over: it fell due {_dur(self.now - due)} ago and a later step is "
                   "due too; only the latest is paged" if what == "page" else
                   f"skipped: it pages only {self.steps[k].when.replace('_', ' ')}")
            self._entry(Entry.STEP_SKIPPED, f"step {k + 1} of {n} {why}", step=k, due_at=due,
                        cause="passed_over" if what == "page" else "when")
        elif what == "restart":
            self._entry(Entry.CHAIN_RESTARTED, f"nobody acknowledged after step {n} of {n}: "
                        f"paging starts again from step 1 (restart {cause})", step=k)
        else:
            why = (f"restarted {p.max_restarts} times already" if p.at_end == "restart"
                   else "the policy says stop")
            self._entry(Entry.END_OF_CHAIN, f"nobody acknowledged after the last step ({n} of {n})"
                        f": no more pages ({why})", step=k)

    def _repeat(self) -> None:
        p, st, now = self.policy, self.st, self.now
        if st.step < 0 or st.step_at is None or not p.repeat_every:
            return
        done = st.repeats  # repeats missed while the agent was down go as one
        while done < p.repeat_max and st.step_at + (done + 1) * p.repeat_every <= now:
            done += 1
        if done > st.repeats:
            self._page(st.step, Event.REPEAT, f"repeat {done} of {p.repeat_max}, not acknowledged")
            self.st = replace(self.st, repeats=done)
        if done < p.repeat_max:
            self.wakes.append(st.step_at + (done + 1) * p.repeat_every)

    def _when(self, when: str, at: float) -> bool:
        if when == "always" or self.hours is None:
            return True
        return in_business_hours(self.hours, at) == (when == "business_hours")

    def _updates(self) -> None:
        u, last = self.policy.updates, self.st.last_update_at
        if u is None:
            return
        if last is None or (u.every is not None and self.now >= last + u.every):
            what = ("incident opened" if last is None else
                    f"still {self.inc.state.value} after {_dur(self.now - self.inc.opened_at)}")
            who = resolve_targets(u.notify, self.roles, self.now)
            if who:
                self.pages.append(Page(who, Event.UPDATE, -1, f"stakeholder update: {what}"))
                self._entry(Entry.STAKEHOLDER_UPDATE, f"update sent to {', '.join(who)}: {what}",
                            contacts=list(who))
            last = self.now
            self.st = replace(self.st, last_update_at=last)
        if u.every is not None:
            self.wakes.append(last + u.every)

    def _page(self, k: int, event: Event, cause: str) -> None:
        who = resolve_targets(self.steps[k].notify, self.roles, self.now)
        reason = f"step {k + 1} of {len(self.steps)} ({cause})"
        if who:
            self.pages.append(Page(who, event, k, reason))
            self.st = replace(self.st, paged=tuple(dict.fromkeys((*self.st.paged, *who))))
        kind = Entry.REPEATED if event is Event.REPEAT else Entry.ESCALATED
        self._entry(kind, f"paged {', '.join(who) or 'nobody (no contact resolved)'}: {reason}",
                    step=k, event=str(event), contacts=list(who))

    def _entry(self, kind: Entry, message: str, **data: Any) -> None:
        self.entries.append(TimelineEntry(self.now, kind, ACTOR, message, data))


def _defer(incident: Incident, st: EscalationState, hours: BusinessHours, route: Route,
           now: float) -> Plan | None:
    opening = next_opening(hours, now)
    if opening is None:
        return None  # no opening left: paging beats silence
    shift, fresh = opening - now, st.step == -1 and st.reached == -1
    new = replace(st, base=opening if fresh else st.base + shift, deferred_until=opening,
                  step_at=None if st.step_at is None else st.step_at + shift,
                  last_update_at=None if st.last_update_at is None else st.last_update_at + shift)
    local = dt.datetime.fromtimestamp(opening, hours.tz).strftime("%a %d %b %H:%M %Z")
    entry = TimelineEntry(now, Entry.DEFERRED, ACTOR,
                          f"{route.severity} incidents page only in business hours: "
                          f"paging deferred until {local}", {"until": opening})
    return Plan(new, incident, (), (entry,), opening)



def _dur(seconds: float) -> str:
    """900 -> "15m", 5400 -> "1h30m", 45 -> "45s": how people write a delay."""
    s = max(0, round(seconds))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{v}{u}" for v, u in parts if v) or "0s"
