"""Read one incident's facts, or a period's, from a store (the shell around `report`)."""

from __future__ import annotations

from agent.incidents import Incident
from agent.report.facts import IncidentFacts, incident_facts
from agent.store.base import Store


def facts_of(store: Store, inc: Incident, now: float) -> IncidentFacts:
    return incident_facts(inc, store.timeline(inc.id), store.messages(inc.id),
                          store.actions(incident_id=inc.id), now=now)


def facts_between(store: Store, since: float, until: float, now: float
                  ) -> list[IncidentFacts]:
    return [facts_of(store, inc, now) for inc in store.incidents_between(since, until)]
