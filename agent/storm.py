"""Alert storms: when many incidents page one person at once, bundle them. Pure.

A recipient who got `threshold` pages within `window` is in a storm: from
then on they get at most one message per `interval`, naming every incident
that fell due meanwhile, instead of dozens of SMS. Nothing is ever dropped:
a held message waits in the outbox and goes out in the next bundle. The gate
only remembers send times (bounded by `threshold` per recipient); the time
is an argument.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from agent.store.records import OutboxMessage
from notifiers.channels import Message


@dataclass(frozen=True, slots=True)
class StormPolicy:
    threshold: int = 5
    window: float = 60.0
    interval: float = 60.0

    def but(self, changes: Mapping[str, float]) -> StormPolicy:
        """These settings with some changed ("threshold", "window", "interval"): a tenant's."""
        return StormPolicy(int(changes.get("threshold", self.threshold)),
                           changes.get("window", self.window),
                           changes.get("interval", self.interval))


class StormGate:
    def __init__(self, policy: StormPolicy,
                 policy_for: Callable[[str], StormPolicy] | None = None) -> None:
        self.policy = policy
        #: A recipient's own settings (a tenant's people: their client's); default `policy`.
        self._policy_for = policy_for or (lambda _contact: policy)
        self._sent: dict[str, deque[float]] = {}

    def _recent(self, contact: str, now: float) -> deque[float]:
        p = self._policy_for(contact)
        recent = self._sent.setdefault(contact, deque(maxlen=p.threshold))
        while recent and recent[0] < now - p.window:
            recent.popleft()
        return recent

    def storming(self, contact: str, now: float) -> bool:
        return len(self._recent(contact, now)) >= self._policy_for(contact).threshold

    def decide(self, contact: str, due: int, now: float) -> tuple[str, float]:
        """("each", now) to send the `due` pages one by one, ("bundle", now) to send
        them as one, or ("hold", until) to keep them for the next bundle."""
        p = self._policy_for(contact)
        recent = self._recent(contact, now)
        if due == 0 or len(recent) + due <= p.threshold:
            return "each", now
        if recent and now < recent[-1] + p.interval and len(recent) >= p.threshold:
            return "hold", recent[-1] + p.interval
        return ("bundle" if due > 1 else "each"), now

    def sent(self, contact: str, now: float) -> None:
        self._recent(contact, now).append(now)


def bundle(msgs: Sequence[OutboxMessage], sms_limit: int = 160) -> Message:
    """One message naming every incident in `msgs` (ack links kept in the rich form)."""
    ids = sorted({m.incident_id for m in msgs if m.incident_id is not None})
    title = f"[{len(msgs)} alerts] " + ", ".join(m.title for m in msgs[:3]) + \
        ("..." if len(msgs) > 3 else "")
    lines = [f"{len(msgs)} notifications for {len(ids)} incident(s) arrived together:"]
    for m in msgs:
        first = m.body.split("\n", 1)[0]
        lines.append(f"- {m.title}: {first}" + (f"\n  Acknowledge: {m.link}" if m.link else ""))
    lines.append("All of them: onwatch incidents --open")
    short = f"{len(msgs)} onwatch alerts: " + " ".join(f"#{i}" for i in ids)
    if len(short) > sms_limit:
        short = short[:sms_limit - 3].rsplit(" ", 1)[0] + "..."
    return Message(title[:200], "\n".join(lines), short)
