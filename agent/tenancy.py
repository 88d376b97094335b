"""Whose is it: the tenant of a name, an incident, a person; what a person may see.

Names of a tenant's checks, contacts, roles and policies are qualified
(`acme.shop`, agent/config_tenants.py), so a name alone says whose it is, and
so does every incident: by its check, or (declared by hand, sent in as an
alert) by its policy. No column in the store is needed, and an incident keeps
its tenant after its check is removed from the config.

Scope: the provider's staff (the top level's contacts, and the shared API
token) see everything (`scope` None); a tenant's contact sees that tenant's
incidents, checks and windows only. A person the config does not know (a
session or a token made for someone since removed) sees only what their
name's tenant prefix says, so nobody gains the provider's view by being
removed from a client's file. Pure: reads the config only.
"""

from __future__ import annotations

from collections.abc import Iterable
from zoneinfo import ZoneInfo

from agent.config import CheckConfig, Config
from agent.config_escalation import Escalation
from agent.config_tenants import Tenant
from agent.incidents import Incident

PROVIDER = ""
#: The scope of someone the config does not know at all: a tenant nobody is called.
NOBODY = "\0"


def of_name(config: Config, name: str | None) -> str:
    """The tenant whose qualified name this is; PROVIDER for the provider's own."""
    head, dot, _ = (name or "").partition(".")
    return head if dot and head in config.tenants else PROVIDER


def of_incident(config: Config, inc: Incident) -> str:
    return of_name(config, inc.check) if inc.check else of_name(config, inc.policy)


def of_person(config: Config, person: str) -> str | None:
    """The tenant whose contact `person` is; None for the provider's staff (sees all)."""
    tenant = of_name(config, person)
    if tenant != PROVIDER:
        return tenant
    if person in config.contacts or not config.tenants:
        return None
    return NOBODY  # unknown, and the config has clients: fail closed


def sees(config: Config, scope: str | None, inc: Incident) -> bool:
    return scope is None or of_incident(config, inc) == scope


def visible(config: Config, scope: str | None, incidents: Iterable[Incident]) -> list[Incident]:
    return [i for i in incidents if sees(config, scope, i)]


def checks_of(config: Config, scope: str | None) -> tuple[CheckConfig, ...]:
    if scope is None:
        return config.checks
    return tuple(c for c in config.checks if c.tenant == scope)


def tenant(config: Config, name: str) -> Tenant | None:
    return config.tenants.get(name)


def escalation(config: Config, name: str) -> Escalation:
    """The tenant's time zone, business hours and routes; the provider's for PROVIDER."""
    found = config.tenants.get(name)
    return found.escalation if found is not None else config.escalation


def tz(config: Config, name: str) -> ZoneInfo:
    found = config.tenants.get(name)
    return found.tz if found is not None else config.agent.tz

