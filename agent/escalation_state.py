"""Where one incident's escalation stands, and what a planning pass returns. Pure data.

`EscalationState` is persisted as JSON with its incident, in the same
transaction as the pages it led to (`to_json`/`from_json`; fields added later
default, so an older store's state still loads). `Page` is one message event
for a set of contacts; `Plan` is one `escalation.plan()` result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from agent.incidents import Incident, TimelineEntry
from agent.vocab import Event


@dataclass(frozen=True, slots=True)
class EscalationState:
    """Where one incident's escalation stands. Plain fields: persisted as JSON."""

    #: Time from which step `after` delays count (opened_at, reopen, restart, opening).
    base: float
    #: Index of the last step paged (-1: none yet); repeats and ack expiry re-page it.
    step: int = -1
    #: When that step was paged (ack_timeout and repeats count from here).
    step_at: float | None = None
    #: Re-pages of the current step done.
    repeats: int = 0
    #: Chain restarts done (at_end == "restart").
    restarts: int = 0
    resolve_escalated: bool = False
    #: End of chain reached and the policy says stop (the timeline says so).
    ended: bool = False
    last_update_at: float | None = None
    #: Every contact paged so far (they hear the acknowledgement and the resolution).
    paged: tuple[str, ...] = ()
    #: business_hours_only route outside hours: nothing happens before this.
    deferred_until: float | None = None
    #: Index of the last step reached, paged *or skipped*; the next one considered
    #: is reached + 1. Differs from `step` only when the chain ended on skipped steps.
    reached: int = -1
    #: A page of the current step could not be delivered to somebody (every channel
    #: failed): the next step is due at this time instead of waiting for the ack timeout.
    unreachable_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "paged": list(self.paged)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EscalationState:
        step = int(data.get("step", -1))
        get = data.get
        return cls(float(data["base"]), step, _float(get("step_at")), int(get("repeats", 0)),
                   int(get("restarts", 0)), bool(get("resolve_escalated", False)),
                   bool(get("ended", False)), _float(get("last_update_at")),
                   tuple(str(c) for c in get("paged", ())), _float(get("deferred_until")),
                   int(get("reached", step)), _float(get("unreachable_at")))


@dataclass(frozen=True, slots=True)
class Page:
    contacts: tuple[str, ...]
    event: Event
    #: Step index, or -1 for updates and the resolution notice.
    step: int
    #: One line for the message and the timeline: "step 2 of 3 (ack timeout 15m passed)".
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    state: EscalationState
    #: Differs from the input when an expired acknowledgement returned it to open.
    incident: Incident
    pages: tuple[Page, ...]
    entries: tuple[TimelineEntry, ...]
    #: The earliest future time plan() must run again (None: nothing scheduled).
    wake_at: float | None


def _float(v: Any) -> float | None:
    return None if v is None else float(v)
