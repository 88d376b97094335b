"""The one vocabulary: every word onwatch stores, sends or exports, defined once.

Severities, incident kinds, what a transition tells people, the events of a
notification, timeline entries and the ways a person can act are `StrEnum`s,
so they compare equal to the strings already in stores and configs, render
as themselves in JSON, logs and metric labels, and let mypy catch a typo.
Nothing anywhere recovers meaning by parsing text: a flapping incident is
`IncidentKind.FLAPPING`, not a title that ends in "is flapping".

(Why a check failed, `ErrorKind`, lives with `CheckResult` in
`checks/result.py`: probes use it without importing the agent.)
"""

from __future__ import annotations

import enum


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    LOW = "low"


#: Most urgent first: how lists, routes and counters order them.
SEVERITIES: tuple[Severity, ...] = tuple(Severity)


class IncidentKind(enum.StrEnum):
    """What an incident is about. A check has at most one open incident per family."""

    OUTAGE = "outage"
    #: An outage whose check keeps going up and down: one incident, not a page per change.
    FLAPPING = "flapping"
    DEGRADED = "degraded"
    CHANGED = "changed"
    EXPIRING = "expiring"
    FILLING = "filling"
    #: Sent in from outside (Alertmanager, a webhook): no check, found by its key.
    ALERT = "alert"

    @property
    def family(self) -> IncidentKind:
        """Flapping is how an outage looks while it flaps: the two share one slot."""
        return IncidentKind.OUTAGE if self is IncidentKind.FLAPPING else self

    @property
    def marks_down(self) -> bool:
        """Only an open outage (flapping included) says the check itself is down."""
        return self.family is IncidentKind.OUTAGE


class Change(enum.StrEnum):
    """What a transition tells the escalation planner (Transition.notify)."""

    OPENED = "opened"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    #: An acknowledgement lapsed: back to open, escalation resumes.
    REOPENED = "reopened"


class Event(enum.StrEnum):
    """The events a notification is sent for (message forms, templates, outbox)."""

    PAGE = "page"
    REPEAT = "repeat"
    ACK_EXPIRED = "ack_expired"
    RESOLVE_TIMEOUT = "resolve_timeout"
    UPDATE = "update"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    TEST = "test"


#: Events that ask somebody to act, and so carry an acknowledgement link.
PAGING_EVENTS = frozenset({Event.PAGE, Event.REPEAT, Event.ACK_EXPIRED, Event.RESOLVE_TIMEOUT})


class Entry(enum.StrEnum):
    """Kinds of timeline entries: the incident's story, and the report's raw material."""

    OPENED = "opened"
    REOPENED = "reopened"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    ACK_EXPIRED = "ack_expired"
    NOTE = "note"
    FLAPPING = "flapping"
    FLAPPING_ENDED = "flapping_ended"
    SEVERITY_CHANGED = "severity_changed"
    ESCALATED = "escalated"
    REPEATED = "repeated"
    STEP_SKIPPED = "step_skipped"
    CHAIN_RESTARTED = "chain_restarted"
    END_OF_CHAIN = "end_of_chain"
    DEFERRED = "deferred"
    STAKEHOLDER_UPDATE = "stakeholder_update"
    CONTACT_UNREACHABLE = "contact_unreachable"
    NOTIFICATION_QUEUED = "notification_queued"
    NOTIFICATION_DELIVERED = "notification_delivered"
    NOTIFICATION_HELD = "notification_held"
    NOTIFICATION_RETRY = "notification_retry"
    NOTIFICATION_FAILED = "notification_failed"
    #: An alert sent in fired again (a new episode) while its incident was still open.
    ALERT_REFIRED = "alert_refired"
    #: A person's words for customers (status page, subscribers): who posted what.
    PUBLIC_UPDATE = "public_update"
    ACTION_ADDED = "action_added"
    #: A person asked for the next escalation step now, or paused paging (console).
    ESCALATE_REQUESTED = "escalate_requested"
    SNOOZED = "snoozed"
    ACTION_DONE = "action_done"


class NoticeKind(enum.StrEnum):
    """What a public notice is, on the status page, its feed and subscribers' mail."""

    OPENING = "opening"
    UPDATE = "update"
    CLOSING = "closing"
    MAINTENANCE = "maintenance"


class ComponentState(enum.StrEnum):
    """A status-page component's state, as customers (and /status.json) see it."""

    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    UNDER_MAINTENANCE = "under_maintenance"


class Via(enum.StrEnum):
    """How a person's action reached the agent (recorded, never taken from the caller)."""

    LINK = "link"
    API = "api"
    CLI = "cli"
    CONSOLE = "console"
    REPLY = "reply"
    #: Reply channels (agent/replies.py): the answer came on this service.
    NTFY = "ntfy"
    TELEGRAM = "telegram"
    EMAIL = "email"
    PUSHOVER = "pushover"
