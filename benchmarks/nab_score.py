"""A NAB-faithful scorer: per-row anomaly scores + labelled windows → normalised score.

Written from the rules of the Numenta Anomaly Benchmark (NAB) as summarised in
the development subset's README; stdlib only, so the benchmark runs anywhere.

Contract:
    rows = sweep_file(name, timestamps, scores, windows)    # one list per file
    result = score_corpus(all_rows, PROFILES["standard"])
    result.threshold, result.raw, result.normalised
    load_results(RESULTS, "onwatch", windows_json)          # rows of a NAB results folder

Also a command that scores any detector's NAB-format results folder:
    python3 benchmarks/nab_score.py --results RESULTS --detector NAME --labels LABELS_DIR

The rules, and why each one is here:
- The first min(floor(0.15 n), 750) rows of a file are probation: the detector
  is still learning, so they are neither rewarded nor penalised.
- A detection is a row whose score is >= the threshold. Inside a window only
  the earliest detection counts (the sigmoid is highest at the window's left
  edge): it earns A_TP * S(p) / S(-1), p = -(right - i + 1) / width.
  A window without a detection costs A_FN.
- Every detection outside the windows costs A_FP * S(d) (negative), with
  d = (i - previous window's right index) / (previous window's width - 1), and
  S = -1 when d >= 3 or when no window came before: a false alarm just after
  a window costs little, one far from any window a full A_FP. This is per row.
- One threshold for the whole corpus, chosen to maximise the total score.
- normalised = 100 * (S - S_null) / (S_perfect - S_null) with S_null =
  -A_FN * windows (never fires) and S_perfect = A_TP * windows (fires at the
  start of every window).

Windows are matched by time: a row is in a window when start <= timestamp <=
end. Windows that lie wholly inside probation are not scored at all (NAB names
their rows "probationary" and drops them), so they count for neither side.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PROBATION_PERCENT = 0.15
#: NAB caps probation at 15 % of 5000 rows.
PROBATION_CAP = 750


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


@dataclass(frozen=True, slots=True)
class Row:
    """One scorable row: its anomaly score, its unweighted sigmoid value, its window.

    `window` is None outside every window; `weight` is S(p)/S(-1) inside a window
    (to multiply by A_TP) and S(d) outside (negative, to multiply by A_FP).
    """

    file: str
    score: float
    weight: float
    window: str | None


@dataclass(frozen=True, slots=True)
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalised: float


def scaled_sigmoid(position: float) -> float:
    """S(y) = 2 / (1 + e^(5y)) - 1, and -1 from three window lengths past a window."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(n_rows: int) -> int:
    return min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_CAP)


def sweep_file(
    name: str,
    timestamps: Sequence[datetime],
    scores: Sequence[float],
    windows: Sequence[tuple[datetime, datetime]],
) -> list[Row]:
    """The scorable rows of one file (probation dropped), in file order."""
    if len(timestamps) != len(scores):
        raise ValueError(f"{name}: {len(timestamps)} timestamps but {len(scores)} scores")
    # Row index ranges of each window, in time order.
    spans: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        inside = [i for i, ts in enumerate(timestamps) if start <= ts <= end]
        if inside:
            spans.append((inside[0], inside[-1]))
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(len(timestamps))
    rows: list[Row] = []
    span_at = 0
    prev_right: int | None = None
    prev_width = 0
    for i, score in enumerate(scores):
        while span_at < len(spans) and spans[span_at][1] < i:
            prev_right = spans[span_at][1]
            prev_width = spans[span_at][1] - spans[span_at][0] + 1
            span_at += 1
        window: str | None = None
        if span_at < len(spans) and spans[span_at][0] <= i:
            left, right = spans[span_at]
            width = right - left + 1
            weight = scaled_sigmoid(-(right - i + 1) / width) / max_tp
            window = f"{name}|{left}"
        elif prev_right is None:
            weight = -1.0
        else:
            # A one-row window has width - 1 == 0: NAB would divide by zero there;
            # treat every later row as far away.
            distance = (i - prev_right) / (prev_width - 1) if prev_width > 1 else 3.0
            weight = scaled_sigmoid(distance)
        if i >= probation:
            rows.append(Row(name, float(score), weight, window))
    return rows


def count_windows(rows: Sequence[Row]) -> int:
    return len({row.window for row in rows if row.window is not None})


def scores_by_threshold(rows: Sequence[Row], profile: Profile) -> list[tuple[float, float]]:
    """(threshold, total score) for every distinct anomaly score, highest first.

    The first entry (threshold 1.1, above any score) is the null detector.
    """
    ordered = sorted(rows, key=lambda row: row.score, reverse=True)
    best_in_window: dict[str, float] = {
        row.window: -profile.fn for row in ordered if row.window is not None
    }
    window_total = sum(best_in_window.values())
    fp_total = 0.0
    threshold = 1.1
    out: list[tuple[float, float]] = []
    for row in ordered:
        if row.score != threshold:
            out.append((threshold, window_total + fp_total))
            threshold = row.score
        if row.window is None:
            fp_total += profile.fp * row.weight
        else:
            value = profile.tp * row.weight
            old = best_in_window[row.window]
            if value > old:
                best_in_window[row.window] = value
                window_total += value - old
    out.append((threshold, window_total + fp_total))
    return out


def score_corpus(rows: Sequence[Row], profile: Profile) -> CorpusScore:
    """Optimise one threshold over all rows of all files and normalise the best score."""
    candidates = scores_by_threshold(rows, profile)
    # Ties: keep the highest threshold (the first seen), as a sort by score would.
    threshold, raw = max(candidates, key=lambda pair: pair[1])
    n = count_windows(rows)
    null = -profile.fn * n
    perfect = profile.tp * n
    normalised = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return CorpusScore(profile.name, threshold, raw, null, perfect, normalised)


def _tally(rows: Sequence[Row], profile: Profile, threshold: float
           ) -> tuple[dict[str, float], float, int]:
    """At a threshold: each window's best reward, the false alarms' cost and count."""
    best: dict[str, float] = {row.window: -profile.fn for row in rows if row.window}
    fp_total, false_alarms = 0.0, 0
    for row in rows:
        if row.score < threshold:
            continue
        if row.window is None:
            fp_total += profile.fp * row.weight
            false_alarms += 1
        else:
            best[row.window] = max(best[row.window], profile.tp * row.weight)
    return best, fp_total, false_alarms


def score_at(rows: Sequence[Row], profile: Profile, threshold: float) -> CorpusScore:
    """The normalised score of `rows` at a threshold chosen elsewhere (another fold's)."""
    best, fp_total, _ = _tally(rows, profile, threshold)
    raw = sum(best.values()) + fp_total
    n = len(best)
    null, perfect = -profile.fn * n, profile.tp * n
    normalised = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return CorpusScore(profile.name, threshold, raw, null, perfect, normalised)


@dataclass(frozen=True, slots=True)
class FileScore:
    file: str
    score: float
    detected: int
    windows: int
    false_alarms: int


def per_file(rows: Sequence[Row], profile: Profile, threshold: float) -> list[FileScore]:
    """Each file's share of the total at a given threshold, to see where points go."""
    by_file: dict[str, list[Row]] = {}
    for row in rows:
        by_file.setdefault(row.file, []).append(row)
    out: list[FileScore] = []
    for name, file_rows in by_file.items():
        best, fp_total, false_alarms = _tally(file_rows, profile, threshold)
        detected = sum(1 for value in best.values() if value > -profile.fn)
        out.append(
            FileScore(name, sum(best.values()) + fp_total, detected, len(best), false_alarms)
        )
    return out


def parse_time(text: str) -> datetime:
    """NAB's timestamps: "2014-04-01 00:00:00", in labels with ".000000"."""
    return datetime.fromisoformat(text.strip())


def load_windows(labels_dir: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """windows.json: {"category/file.csv": [[start, end], ...]}."""
    raw = json.loads((labels_dir / "windows.json").read_text())
    return {name: [(parse_time(a), parse_time(b)) for a, b in spans] for name, spans in raw.items()}


def read_scored_csv(path: Path) -> tuple[list[datetime], list[float]]:
    """A detector's results file: timestamp, value, anomaly_score (and maybe more)."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [(parse_time(r["timestamp"]), float(r["anomaly_score"])) for r in reader]
    return [ts for ts, _ in rows], [score for _, score in rows]


def load_results(
    results_dir: Path, detector: str, windows: dict[str, list[tuple[datetime, datetime]]]
) -> tuple[list[Row], list[str]]:
    """Rows of every labelled file in RESULTS/<detector>/<category>/<detector>_<file>.csv.

    Returns the rows and the labelled files that had no results (so a partial run
    is visible instead of silently scoring fewer windows).
    """
    rows: list[Row] = []
    missing: list[str] = []
    for name in sorted(windows):
        category, _, file = name.partition("/")
        path = results_dir / detector / category / f"{detector}_{file}"
        if not path.is_file():
            missing.append(name)
            continue
        timestamps, scores = read_scored_csv(path)
        rows.extend(sweep_file(name, timestamps, scores, windows[name]))
    return rows, missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a NAB-format results folder.")
    parser.add_argument("--results", type=Path, required=True, help="folder holding DETECTOR/")
    parser.add_argument("--detector", default="onwatch")
    parser.add_argument("--labels", type=Path, required=True, help="folder with windows.json")
    args = parser.parse_args(argv)
    windows = load_windows(args.labels)
    rows, missing = load_results(args.results, args.detector, windows)
    for name in missing:
        print(f"no results for {name}", file=sys.stderr)
    for profile in PROFILES.values():
        result = score_corpus(rows, profile)
        print(f"{profile.name:20s} {result.normalised:7.2f}  threshold {result.threshold:.4f}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
