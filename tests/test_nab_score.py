"""The NAB scorer on tiny series and windows written here (no NAB data needed)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.nab_score import (
    PROFILES,
    Row,
    load_results,
    load_windows,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    scores_by_threshold,
    sweep_file,
)

START = datetime(2014, 4, 1)
STEP = timedelta(minutes=5)
N = 1000  # probation: 150 rows
STANDARD = PROFILES["standard"]


def stamps(n: int = N) -> list[datetime]:
    return [START + i * STEP for i in range(n)]


def window(first: int, last: int) -> tuple[datetime, datetime]:
    return START + first * STEP, START + last * STEP


WINDOWS = [window(400, 449), window(700, 749)]  # 50 rows each


def fire_at(*rows: int, n: int = N) -> list[float]:
    scores = [0.0] * n
    for i in rows:
        scores[i] = 1.0
    return scores


def raw_at_one(rows: list[Row], profile_name: str = "standard") -> float:
    """The total score with threshold 1.0 (only rows scored 1.0 fire)."""
    return dict(scores_by_threshold(rows, PROFILES[profile_name]))[1.0]


def test_scaled_sigmoid_values() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0
    assert scaled_sigmoid(10.0) == -1.0


def test_probation_length() -> None:
    assert probation_length(1000) == 150
    assert probation_length(4032) == 604
    assert probation_length(10000) == 750  # capped


@pytest.mark.parametrize("profile", list(PROFILES))
def test_null_detector_scores_zero(profile: str) -> None:
    rows = sweep_file("a.csv", stamps(), [0.0] * N, WINDOWS)
    result = score_corpus(rows, PROFILES[profile])
    assert result.normalised == pytest.approx(0.0)
    assert result.raw == result.null == -PROFILES[profile].fn * 2


@pytest.mark.parametrize("profile", list(PROFILES))
def test_perfect_detector_scores_100(profile: str) -> None:
    rows = sweep_file("a.csv", stamps(), fire_at(400, 700), WINDOWS)
    result = score_corpus(rows, PROFILES[profile])
    assert result.normalised == pytest.approx(100.0)
    assert result.threshold == 1.0


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    once = raw_at_one(sweep_file("a.csv", stamps(), fire_at(400, 700), WINDOWS))
    often = raw_at_one(sweep_file("a.csv", stamps(), fire_at(400, 401, 420, 700, 749), WINDOWS))
    assert often == once


def test_late_detection_scores_less_than_early() -> None:
    def score(i: int) -> float:
        return raw_at_one(sweep_file("a.csv", stamps(), fire_at(i, 700), WINDOWS))

    early, middle, late = score(400), score(425), score(449)
    assert early > middle > late
    # Halfway through a window is worth S(-0.5)/S(-1) of a hit at its start.
    assert early - middle == pytest.approx(1 - scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0))
    # A hit on the last row still beats a miss (which costs A_FN).
    assert late > score(0)


def test_false_alarm_costs_a_fp_per_row() -> None:
    base = sweep_file("a.csv", stamps(), fire_at(400, 700), WINDOWS)
    one = sweep_file("a.csv", stamps(), fire_at(400, 700, 300), WINDOWS)
    two = sweep_file("a.csv", stamps(), fire_at(400, 700, 300, 301), WINDOWS)
    # Row 300 comes before any window: a full A_FP, for each row that fires.
    assert raw_at_one(base) - raw_at_one(one) == pytest.approx(0.11)
    assert raw_at_one(base) - raw_at_one(two) == pytest.approx(0.22)
    assert raw_at_one(base, "reward_low_FP_rate") - raw_at_one(
        two, "reward_low_FP_rate"
    ) == pytest.approx(0.44)


def test_false_alarm_just_after_a_window_costs_less() -> None:
    def cost(i: int) -> float:
        base = raw_at_one(sweep_file("a.csv", stamps(), fire_at(400, 700), WINDOWS))
        return base - raw_at_one(sweep_file("a.csv", stamps(), fire_at(400, 700, i), WINDOWS))

    assert cost(451) < cost(480) < cost(600)
    # d = (i - right) / (width - 1) = 1 row / 49: S(1/49) is a small negative number.
    assert cost(450) == pytest.approx(-0.11 * scaled_sigmoid(1 / 49))
    # Three window lengths after the window and beyond: a full A_FP.
    assert cost(449 + 3 * 49) == pytest.approx(0.11)


def test_missed_window_costs_a_fn() -> None:
    hit_one = raw_at_one(sweep_file("a.csv", stamps(), fire_at(400), WINDOWS))
    both = raw_at_one(sweep_file("a.csv", stamps(), fire_at(400, 700), WINDOWS))
    assert both - hit_one == pytest.approx(2.0)  # +1 for the hit, +1 for no A_FN
    assert raw_at_one(
        sweep_file("a.csv", stamps(), fire_at(400), WINDOWS), "reward_low_FN_rate"
    ) == pytest.approx(1.0 - 2.0)


def test_probation_is_ignored() -> None:
    quiet = sweep_file("a.csv", stamps(), fire_at(400, 700), WINDOWS)
    noisy = sweep_file("a.csv", stamps(), fire_at(0, 50, 149, 400, 700), WINDOWS)
    assert raw_at_one(noisy) == raw_at_one(quiet)
    assert len(quiet) == N - 150
    # A window wholly inside probation is neither a hit nor a miss.
    early = [window(10, 20), *WINDOWS]
    rows = sweep_file("a.csv", stamps(), fire_at(400, 700), early)
    assert score_corpus(rows, STANDARD).normalised == pytest.approx(100.0)


def test_threshold_is_optimised_over_the_whole_corpus() -> None:
    # File a: its window is found by a 0.6 score; file b has a 0.7 false alarm.
    a = [0.0] * N
    a[400] = 0.6
    b = [0.0] * N
    b[500] = 0.7
    rows = sweep_file("a.csv", stamps(), a, WINDOWS[:1]) + sweep_file(
        "b.csv", stamps(), b, []
    )
    result = score_corpus(rows, STANDARD)
    # One threshold for both: 0.6 finds the window and pays for b's false alarm.
    assert result.threshold == 0.6
    assert result.raw == pytest.approx(1.0 - 0.11)
    assert result.normalised == pytest.approx(100 * (1.0 - 0.11 + 1.0) / 2.0)


def test_load_results_reads_a_nab_folder(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    spans = [[f"{a:%Y-%m-%d %H:%M:%S}.000000", f"{b:%Y-%m-%d %H:%M:%S}.000000"] for a, b in WINDOWS]
    (labels / "windows.json").write_text(json.dumps({"cat/x.csv": spans, "cat/gone.csv": []}))
    out = tmp_path / "results" / "det" / "cat"
    out.mkdir(parents=True)
    lines = ["timestamp,value,anomaly_score"]
    scores = fire_at(400, 700)
    lines += [f"{ts:%Y-%m-%d %H:%M:%S},1.0,{s}" for ts, s in zip(stamps(), scores, strict=True)]
    (out / "det_x.csv").write_text("\n".join(lines) + "\n")
    windows = load_windows(labels)
    rows, missing = load_results(tmp_path / "results", "det", windows)
    assert missing == ["cat/gone.csv"]
    assert score_corpus(rows, STANDARD).normalised == pytest.approx(100.0)


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError):
        sweep_file("a.csv", stamps(), [0.0] * (N - 1), WINDOWS)
