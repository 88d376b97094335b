"""Flapping on fake run sequences: starts past `high`, ends below `low`, ignores one outage."""

from __future__ import annotations

import pytest

from agent.detect.flapping import FlapState, observe, percent_change


def feed(seq: str) -> list[str]:
    """'u'/'d' confirmed health per run; returns the events ('start@i', 'stop@i')."""
    st, events = FlapState(), []
    for i, ch in enumerate(seq):
        step = observe(st, ch == "d")
        st = step.state
        if step.started:
            events.append(f"start@{i}")
        if step.stopped:
            events.append(f"stop@{i}")
    return events


@pytest.mark.parametrize(
    ("seq", "events"),
    [
        ("u" * 40, []),
        ("u" * 10 + "d" * 10 + "u" * 20, []),  # one outage is not flapping
        ("u" * 10 + "ddduu" * 2 + "u" * 30, []),  # two outages close together: not yet
        # Three outages: flapping from the fifth change; it ends once at most one
        # change is left among the last 21 runs (hysteresis: well after it settled).
        ("u" * 10 + "ddduu" * 3 + "u" * 30, ["start@20", "stop@38"]),
        ("dduu" * 10, ["start@10"]),  # keeps flapping: never stops
        ("dduu" * 6 + "u" * 25, ["start@10", "stop@38"]),
    ],
)
def test_sequences(seq: str, events: list[str]) -> None:
    assert feed(seq) == events


def test_weights_favour_recent_changes() -> None:
    recent = percent_change(0b1, 21)  # newest run down: one change, the newest
    old = percent_change(0b1 << 20, 21)  # only the oldest run down: the oldest change
    assert recent == pytest.approx(1.2 / 20) and old == pytest.approx(0.8 / 20)
    assert percent_change(int("10" * 10 + "1", 2), 21) == pytest.approx(1.0)
