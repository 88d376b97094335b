"""Read one incident's facts, or a period's, from a store (the shell around `report`);
`report_context`: what a report needs from the config and the status page.

`scoped_review` is the review as one tenant's people (or the provider) may see it.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from agent import tenancy
from agent.config import Config
from agent.incidents import Incident
from agent.report.facts import IncidentFacts, incident_facts
from agent.report.incident import Context
from agent.report.review import Review, review
from agent.status.notices import PUBLIC_KINDS
from agent.store.base import Store
from agent.store.status import StatusStore
from checks.registry import KINDS


def facts_of(store: Store, inc: Incident, now: float) -> IncidentFacts:
    return incident_facts(inc, store.timeline(inc.id), store.messages(inc.id),
                          store.actions(incident_id=inc.id), now=now)


def facts_between(store: Store, since: float, until: float, now: float
                  ) -> list[IncidentFacts]:
    return [facts_of(store, inc, now) for inc in store.incidents_between(since, until)]


def scoped_review(cfg: Config, store: Store, since: float, until: float, now: float,
                  scope: str | None) -> tuple[Review, ZoneInfo, str]:
    """The review of one tenant (its checks, incidents, actions, hours and time zone), or of
    everything for the provider (`scope` None); with the time zone and the client's title."""
    facts = [f for f in facts_between(store, since, until, now)
             if tenancy.sees(cfg, scope, f.incident)]
    tenant = cfg.tenants.get(scope or "")
    actions = [a for a in store.actions(open_only=True)
               if scope is None or ((inc := store.incident(a.incident_id)) is not None
                                    and tenancy.sees(cfg, scope, inc))]
    tz = tenancy.tz(cfg, scope or "")
    r = review(facts, checks=[c.name for c in tenancy.checks_of(cfg, scope)], since=since,
               until=until, tz=tz, hours=tenancy.escalation(cfg, scope or "").hours,
               open_actions=actions)
    return r, tz, tenant.title if tenant is not None else ""

def report_context(cfg: Config, inc: Incident, store: Store) -> Context:
    """What the report needs beyond the store's incident: the check's target, the policy's
    ack timeout, and the customer side from the status page (components, notices sent)."""
    c = cfg.check(inc.check) if inc.check else None
    pol = cfg.escalation.policies.get(inc.policy or "")
    comps = (cfg.status.by_check.get(inc.check, ())
             if inc.check and inc.kind in PUBLIC_KINDS else ())
    try:
        notices = StatusStore(store, create=False).notices(incident_id=inc.id)
    except store.errors:  # a store the status page never wrote to (no such table)
        notices = []
    return Context(cfg.agent.tz, business=cfg.status.title if cfg.status.components else "",
                   target=KINDS[c.type].target(c.spec) if c else "",
                   ack_timeout=pol.ack_timeout if pol else None,
                   components=tuple(x.name for x in comps),
                   public_notices=tuple((n.at, n.text) for n in reversed(notices)))
