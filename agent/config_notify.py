"""The notification half of the config: [notifications] and [templates].

Called by `agent.config.parse` with the shared error list; problems read
`notifications: retry_cap: ...` and `templates: page_sms: unknown placeholder ...`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.fields import Section


@dataclass(frozen=True)
class DeliveryPolicy:
    """[notifications]: how hard the outbox tries before it says a message failed."""

    retry_cap: float = 60.0
    deadline: float = 3600.0
    send_timeout: float = 30.0
    #: A recipient who got `storm_threshold` messages within `storm_window` gets at
    #: most one bundled message per `storm_interval` after that.
    storm_threshold: int = 5
    storm_window: float = 60.0
    storm_interval: float = 60.0


def delivery(sec: Section) -> DeliveryPolicy:
    p = DeliveryPolicy(sec.duration("retry_cap", 60.0), sec.duration("deadline", 3600.0),
                       sec.duration("send_timeout", 30.0),
                       sec.integer("storm_threshold", 5, low=1, high=1000),
                       sec.duration("storm_window", 60.0), sec.duration("storm_interval", 60.0))
    sec.finish()
    return p


def storm_overrides(sec: Section) -> dict[str, float]:
    """A tenant's [notifications]: only its storm settings, as it set them (the others are the
    provider's); keyed like `agent.storm.StormPolicy`'s fields."""
    out: dict[str, float] = {}
    if sec.has("storm_threshold"):
        out["threshold"] = sec.integer("storm_threshold", 5, low=1, high=1000)
    for key in ("window", "interval"):
        if sec.has(f"storm_{key}"):
            out[key] = sec.duration(f"storm_{key}", 60.0)
    sec.finish()
    return out


def templates(sec: Section) -> dict[str, str]:
    from notifiers.messages import template_problem

    out: dict[str, str] = {}
    for key in list(sec.raw):
        text = sec.string(key)
        problem = template_problem(key, text)
        if problem:
            sec.error(key, problem)
        else:
            out[key] = text
    return out
