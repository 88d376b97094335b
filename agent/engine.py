"""The incident engine: applies transitions, runs the escalation planner, keeps timers.

Every change to an incident goes through here: opened or resolved by a check,
acknowledged (link, API, CLI), resolved by a person, declared by hand, noted.
Each one is persisted in one transaction together with the planner's new
escalation state, its timeline entries and the outbox messages it owes, and
only then is the outbox woken. The engine then sleeps until the earliest
`wake_at` among open incidents (or until woken by a change).

After `kill -9` and a restart `restore()` reloads every open incident and its
escalation state from the store; the planner, run at once, pages whatever fell
due while the agent was down, and nothing it already paged (the state says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import structlog

from agent import alerts, engine_manual, escalation, incidents, links, tenancy, triage
from agent.calendar import resolve_targets
from agent.config import CheckConfig, Config
from agent.detect.maintenance import MaintenanceWindow
from agent.detect.outage import Health
from agent.detect.pipeline import CheckSignal, Held, OutageChange
from agent.engine_actions import MaintenanceWindows, PreventionActions
from agent.errors import ActionError, Conflict, Invalid, NotFound
from agent.escalation import EscalationState, Page
from agent.incidents import Incident, State, TimelineEntry, Transition
from agent.intake import AlertEvent
from agent.metrics import Metrics
from agent.pending import RETRY_S, PendingWrites
from agent.policy import EscalationStep, Policy, Route
from agent.relay import Leading, Relay, relayable
from agent.store.base import Store
from agent.store.records import OutboxMessage
from agent.vocab import PAGING_EVENTS, Change, Entry, IncidentKind, Severity, Via
from checks.registry import KINDS
from notifiers import messages

log = structlog.get_logger(__name__)

#: The action errors are the engine's vocabulary for callers (api, web, cli).
__all__ = ["ActionError", "Conflict", "Engine", "Invalid", "Live", "NotFound"]


@dataclass(slots=True)
class Live:
    incident: Incident
    state: EscalationState
    wake_at: float | None


class Engine(PreventionActions, MaintenanceWindows, Leading):
    def __init__(self, config: Config, store: Store, metrics: Metrics, link_key: bytes,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.link_key = link_key
        self.public_url = config.agent.public_url or ""
        self.outbox_wakeup = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._live: dict[int, Live] = {}
        self._stopping = False
        self._windows: tuple[MaintenanceWindow, ...] | None = None
        #: Called inside the transaction of every incident change with (incident, the
        #: event notified or None, now): the status page's notices are stored with it.
        self.hooks: list[Callable[[Incident, Change | None, float], None]] = []
        #: Wired by the daemon: Runner.forget_outage; the outbox's delivery from memory.
        self.on_resolved_by_hand: Callable[[Incident], None] = lambda _inc: None
        self.deliver_unstored: Callable[[list[OutboxMessage]], None] = lambda _msgs: None
        self.pending = PendingWrites(metrics.store_errors.inc)
        #: False on a standby (agent/leader.py): it opens, plans and pages nothing, and
        #: people's actions go to the leader through `relay` (agent/relay.py).
        self.leading = True
        self.relay: Relay | None = None
        self.on_fenced: Callable[[str], None] = lambda _why: None

    # -- lookups ---------------------------------------------------------------

    def open_for_check(self, check: str, kind: IncidentKind = IncidentKind.OUTAGE
                       ) -> Incident | None:
        """The check's open incident of `kind`'s family (an outage that flaps counts)."""
        return next((lv.incident for lv in self._live.values()
                     if lv.incident.check == check and lv.incident.kind.family is kind.family),
                    None)

    def route(self, severity: Severity, tenant: str = "") -> Route | None:
        routes = tenancy.escalation(self.config, tenant).routes
        return next((r for r in routes if r.severity == severity), None)

    def policy_name_for(self, check: CheckConfig | None, severity: Severity,
                        asked: str | None = None, tenant: str = "") -> str:
        tenant = check.tenant if check else tenant
        route = self.route(severity, tenant)
        if asked:
            return asked
        if route is not None and route.policy:
            return route.policy
        # A declared incident (no check) pages like a check would: [defaults] policy.
        found = self.config.tenants.get(tenant)
        default = found.default_policy if found else self.config.default_policy
        return (check.policy or "") if check else (default or "")

    def policy(self, inc: Incident) -> Policy:
        found = self.config.escalation.policies.get(inc.policy or "")
        if found is not None:
            return found
        check = self.config.check(inc.check) if inc.check else None
        # A check without a policy pages its contacts once; nothing escalates.
        return Policy(name="", steps=(EscalationStep(0.0, check.contacts if check else ()),),
                      ack_timeout=None)

    # -- what checks report ------------------------------------------------------

    def on_check_signal(self, check: CheckConfig, signal: CheckSignal) -> Incident | None:
        """The one way a check opens, updates or resolves its incidents."""
        if not self.leading:  # the leader's runner saw it too and acts on it
            return None
        if isinstance(signal, Held):
            self._held(check, signal)
            return None
        now, kind = self.clock(), triage.kind_of(signal)
        current = self.open_for_check(check.name, kind)
        latest = None
        if (current is None and isinstance(signal, OutageChange)
                and signal.signal.kind is Health.DOWN):
            latest = self.read_or_none(lambda: self.store.latest_incident(check.name))  # reopened?
        policy = self.config.escalation.policies.get(
            self.policy_name_for(check, check.severity))
        ctx = triage.Context(check.name, check.severity, KINDS[check.type].target(check.spec),
                             now, self.pending.next_id(self.store),
                             policy.reopen_window if policy else 0.0)
        tr = triage.decide(signal, current, latest, ctx)
        if tr is None:
            return None
        if tr.notify is Change.OPENED:
            tr = replace(tr, incident=replace(
                tr.incident, policy=self.policy_name_for(check, tr.incident.severity)))
        inc = self.apply(tr)
        if tr.notify is not None:
            log.warning(f"incident_{tr.notify}", incident=inc.id, check=check.name,
                        kind=str(inc.kind), reason=inc.reason, severity=str(inc.severity),
                        signal=type(signal).__name__.lower())
        return inc

    def _held(self, check: CheckConfig, held: Held) -> None:
        """A suppressed outage: noted on its parents' incidents, paged later if it lasts."""
        log.warning("outage_suppressed", check=check.name, reason=held.signal.reason,
                    why=held.why)
        for parent in check.depends_on:
            inc = self.open_for_check(parent)
            if inc is not None:  # the child's outage becomes part of the parent's story
                self.note(inc.id, by="onwatch",
                          text=f"{check.name} is down too ({held.signal.reason}); it depends "
                               f"on {parent}, so it is not paged separately")

    # -- transitions -----------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: every open incident is planned again now, with its policy as
        configured now (steps already paged stay paged: that is in their state)."""
        self.config = config
        now = self.clock()
        for live in self._live.values():
            live.wake_at = now
        self._wakeup.set()

    def restore(self) -> None:
        self._live.clear()
        self._windows = None
        for inc in self.store.open_incidents() if self.leading else ():
            raw = self.store.escalation(inc.id)
            state = (EscalationState.from_json(raw) if raw else escalation.start(inc))
            self._live[inc.id] = Live(inc, state, self.clock())
        self.metrics.count_open([lv.incident for lv in self._live.values()])
        if self._live:
            log.info("incidents_restored", open=len(self._live))
        self._wakeup.set()

    def apply(self, tr: Transition, state: EscalationState | None = None) -> Incident:
        """Persist a transition, plan its escalation, queue its messages; returns the incident."""
        now, inc = self.clock(), tr.incident
        prior = self._live.get(inc.id)
        entries: list[TimelineEntry] = list(tr.entries)
        pages: list[Page] = []
        wake: float | None = None
        if tr.notify is Change.OPENED:
            # A reopened incident starts a fresh chain but keeps who was paged before,
            # so that everybody from the first episode hears the final resolution.
            before = (self.read_or_none(lambda: self.store.escalation(inc.id))
                      if prior is None else None)
            previous = EscalationState.from_json(before) if before else None
            state = state or escalation.start(inc, previous)
        elif prior is not None:
            state = state or prior.state
        if inc.is_open and state is not None:
            # A client's incident follows its own business hours, time zone and routes.
            tenant = tenancy.of_incident(self.config, inc)
            plan = escalation.plan(inc, state, self.policy(inc), self.config.escalation.roles,
                                   tenancy.escalation(self.config, tenant).hours,
                                   self.route(inc.severity, tenant), now)
            inc, state = plan.incident, plan.state
            entries += plan.entries
            pages += plan.pages
            if tr.notify is Change.ACKNOWLEDGED:
                pages += escalation.on_acknowledged(inc, state, now)
            wake = plan.wake_at
        elif state is not None:
            pages += escalation.on_resolved(inc, state, self.policy(inc),
                                            self.config.escalation.roles, now)
        self._persist(inc, state, entries, pages, now, tr.notify)
        if not self.leading:  # fenced: another instance leads and owns the incident now
            return inc
        self.metrics.incidents.changed(tr.notify, inc, pages, now)
        if inc.is_open and state is not None:
            self._live[inc.id] = Live(inc, state, wake)
        else:
            self._live.pop(inc.id, None)
        self.metrics.count_open([lv.incident for lv in self._live.values()])
        self._wakeup.set()
        return inc

    @relayable
    def acknowledge(self, incident_id: int, *, by: str, via: Via) -> Incident:
        inc = self._open_incident(incident_id)
        tr = incidents.acknowledge(inc, now=self.clock(), by=by, via=via)
        if tr is None:
            raise Conflict(f"incident #{inc.id} was already acknowledged by "
                           f"{inc.acknowledged_by}")
        return self.apply(tr)

    @relayable
    def resolve(self, incident_id: int, *, by: str, cause: str, fix: str,
                via: Via | None = None) -> Incident:
        inc = self._open_incident(incident_id)
        note = f"resolved by {by}. Cause: {cause or 'not given'}. Fix: {fix or 'not given'}"
        tr = incidents.resolve(inc, now=self.clock(), actor=by, note=note, cause=cause, fix=fix,
                               via=via)
        assert tr is not None  # open incidents always resolve
        self.on_resolved_by_hand(done := self.apply(tr))
        return done

    @relayable
    def note(self, incident_id: int, *, by: str, text: str, via: Via | None = None) -> None:
        inc = self.store.incident(incident_id)
        if inc is None:
            raise NotFound(f"no incident #{incident_id}")
        with self.store.tx():
            self.store.append(inc.id, [incidents.note(inc, now=self.clock(), by=by, text=text,
                                                      via=via)])

    @relayable
    def escalate_now(self, incident_id: int, *, by: str, via: Via) -> Incident:
        return engine_manual.escalate_now(self, incident_id, by=by, via=via)

    @relayable
    def snooze(self, incident_id: int, *, by: str, via: Via, seconds: float) -> Incident:
        return engine_manual.snooze(self, incident_id, by=by, via=via, seconds=seconds,
                                    tz=self._tz(incident_id))

    @relayable
    def declare(self, *, title: str, severity: Severity, policy: str | None, by: str,
                reason: str, tenant: str = "") -> Incident:
        name = self.policy_name_for(None, severity, policy, tenant)
        if name not in self.config.escalation.policies:
            raise Invalid(
                f"no policy {name!r} to page with; give one of "
                f"{', '.join(sorted(self.config.escalation.policies)) or '(none configured)'}"
                if name else "no policy to page with: give --policy, set [defaults] policy, or "
                             f"add a [[routes]] entry for severity {str(severity)!r}")
        tr = incidents.declare(new_id=self.pending.next_id(self.store), title=title,
                               severity=severity, by=by, reason=reason or title, now=self.clock())
        return self.apply(replace(tr, incident=replace(tr.incident, policy=name)))

    def on_alert(self, ev: AlertEvent) -> str:
        """An alert sent in (Alertmanager, a webhook): open, update or resolve its incident.

        Returns the outcome (`alerts.OUTCOMES`). The policy: the one the alert names,
        else the severity's route, else the intake's (`[intake] policy`).
        """
        current = next((lv.incident for lv in self._live.values() if lv.incident.key == ev.key),
                       None) or self.read_or_none(lambda: self.store.latest_by_key(ev.key))
        tr, outcome = alerts.on_alert(current, ev, now=self.clock(),
                                      new_id=self.pending.next_id(self.store))
        if tr is not None and tr.notify is Change.OPENED:
            route = self.route(ev.severity)
            fallback = self.config.intake.policy if self.config.intake else ""
            name = ev.policy or (route.policy if route is not None else None) or fallback
            tr = replace(tr, incident=replace(tr.incident, policy=name))
        if tr is not None:
            self.apply(tr)
        return outcome

    def unreachable(self, incident_id: int, contact: str, event: str) -> None:
        """The outbox could reach `contact` on no channel: page the next step now."""
        live = self._live.get(incident_id)
        if live is None or event not in PAGING_EVENTS or live.incident.state is not State.OPEN:
            return
        step = self.policy(live.incident).steps[max(live.state.step, 0)]
        targets = resolve_targets(step.notify, self.config.escalation.roles, self.clock())
        if contact not in targets:
            return  # an older step's message: the chain has moved on already
        with self.store.tx():
            self.store.append(incident_id, [TimelineEntry(
                self.clock(), Entry.CONTACT_UNREACHABLE, "onwatch",
                f"{contact} could not be reached on any channel: escalating now")])
        self.apply(Transition(live.incident, (), None),
                   escalation.unreachable(live.state, self.clock()))

    def _tz(self, incident_id: int) -> ZoneInfo:
        live = self._live.get(incident_id)
        tenant = tenancy.of_incident(self.config, live.incident) if live else ""
        return tenancy.tz(self.config, tenant)

    def _open_incident(self, incident_id: int) -> Incident:
        live = self._live.get(incident_id)
        if live is not None:
            return live.incident
        inc = self.store.incident(incident_id)
        if inc is None:
            raise NotFound(f"no incident #{incident_id}")
        raise Conflict(f"incident #{incident_id} is already resolved"
                          + (f" (by {inc.resolved_by})" if inc.resolved_by else ""))

    # -- the timer loop ----------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            now = self.clock()
            for live in [lv for lv in self._live.values()
                         if lv.wake_at is not None and lv.wake_at <= now]:
                self.apply(Transition(live.incident, (), None), live.state)
            nxt = min((lv.wake_at for lv in self._live.values() if lv.wake_at is not None),
                      default=None)
            delay = 60.0 if nxt is None else max(0.0, min(60.0, nxt - self.clock()))
            if self.pending and self._flush(self.clock()):
                self.outbox_wakeup.set()  # what waited in memory is stored now
            delay = min(delay, RETRY_S) if self.pending else delay
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    # -- persistence and messages -------------------------------------------------

    def _persist(self, inc: Incident, state: EscalationState | None,
                 entries: Sequence[TimelineEntry], pages: Sequence[Page], now: float,
                 event: Change | None = None) -> None:
        outgoing = [(m, p.step) for p in pages for m in self._messages(inc, p, now)]
        entries = [*entries, *(
            TimelineEntry(now, Entry.NOTIFICATION_QUEUED, "onwatch",
                          f"{m.event} message queued for {m.contact}",
                          {"message_id": m.id, "contact": m.contact, "event": m.event,
                           "step": step})
            for m, step in outgoing)]
        after = [functools.partial(hook, inc, event, now) for hook in self.hooks]  # same tx
        msgs = [m for m, _ in outgoing]
        self.pending.add(inc, state.to_json() if state else None, entries, msgs, after)
        stored = self._flush(now)  # in order; a refused one waits in memory
        if not self.leading:
            return
        if msgs:
            self.outbox_wakeup.set() if stored else self.deliver_unstored(msgs)
        for p in pages:
            log.warning("incident_notify", incident=inc.id, check=inc.check, notify=p.event,
                        step=p.step + 1, contacts=list(p.contacts))

    def _messages(self, inc: Incident, page: Page, now: float) -> list[OutboxMessage]:
        check = self.config.check(inc.check) if inc.check else None
        target = KINDS[check.type].target(check.spec) if check else ""
        out, ackable = [], page.event in PAGING_EVENTS and inc.state is State.OPEN
        for contact in page.contacts:
            link = links.ack_url(self.public_url, self.link_key, inc.id, contact, now,
                                 inc.opened_at) if ackable else None
            msg_id = str(uuid.uuid4())
            m = messages.render(page.event, inc, target=target, link=link, reason=page.reason,
                                tz=tenancy.tz(self.config, tenancy.of_incident(self.config, inc)),
                                message_id=msg_id, now=now,
                                overrides=self.config.templates)
            out.append(OutboxMessage(msg_id, inc.id, contact, page.event, m.title, m.body, now,
                                     now, short=m.short, link=link or ""))
        return out
