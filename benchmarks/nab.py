"""The agent's anomaly detector on the Numenta Anomaly Benchmark (NAB), scored NAB's way.

Run (from the repository root):

    python3 benchmarks/nab.py --data ../shared/nab/data --out /tmp/nab-results
    python3 benchmarks/nab.py --data DIR --out RESULTS [--labels LABELS_DIR] [--per-file]

What it does: for every DIR/<category>/<file>.csv (columns timestamp,value) it
feeds the rows in order to one `agent.detect.baseline.Baseline()` — the very
class the agent uses, with the defaults a user gets — and writes
RESULTS/onwatch/<category>/onwatch_<file>.csv with the columns
timestamp,value,anomaly_score, each score computed before the detector learns
its row. Any NAB-compatible scorer can read that folder. Then it scores the
folder with benchmarks/nab_score.py against LABELS_DIR/windows.json (default
DIR/../labels) and prints, per profile (standard, reward_low_FP_rate,
reward_low_FN_rate), the normalised score and the threshold chosen for the
whole corpus, and the detector's time per sample (only the update() calls).
Also written: RESULTS/onwatch_summary.json with the same figures.

Scores on a subset of NAB are comparable with other detectors scored on the
same subset, not with NAB's whole-corpus scoreboard.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.detect.baseline import Baseline  # noqa: E402
from benchmarks.nab_score import (  # noqa: E402
    PROFILES,
    load_results,
    load_windows,
    parse_time,
    per_file,
    score_corpus,
)

DETECTOR = "onwatch"


def run_file(source: Path, target: Path) -> tuple[int, float]:
    """Score one series into a NAB results file; returns (rows, seconds in update())."""
    with source.open(newline="") as f:
        rows = [(r["timestamp"], r["value"]) for r in csv.DictReader(f)]
    times = [parse_time(ts).replace(tzinfo=UTC).timestamp() for ts, _ in rows]
    values = [float(v) for _, v in rows]
    detector = Baseline()
    update = detector.update
    started = time.perf_counter()
    scores = [update(t, v) for t, v in zip(times, values, strict=True)]
    elapsed = time.perf_counter() - started
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for (ts, value), score in zip(rows, scores, strict=True):
            writer.writerow([ts, value, repr(score)])
    return len(rows), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    default_data = ROOT.parent / "shared" / "nab" / "data"
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data if default_data.is_dir() else None,
        help="NAB-layout folder: DATA/<category>/<file>.csv",
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder to write")
    parser.add_argument("--labels", type=Path, help="folder with windows.json (DATA/../labels)")
    parser.add_argument("--per-file", action="store_true", help="print each file's share")
    args = parser.parse_args(argv)
    if args.data is None or not args.data.is_dir():
        parser.error("--data: no NAB data folder given or found")
    labels = args.labels or args.data.parent / "labels"
    if not (labels / "windows.json").is_file():
        parser.error(f"--labels: no windows.json in {labels}")

    sources = sorted(args.data.glob("*/*.csv"))
    if not sources:
        parser.error(f"--data: no <category>/<file>.csv under {args.data}")
    samples, seconds = 0, 0.0
    for source in sources:
        target = args.out / DETECTOR / source.parent.name / f"{DETECTOR}_{source.name}"
        n, elapsed = run_file(source, target)
        samples += n
        seconds += elapsed

    windows = load_windows(labels)
    ran = {f"{s.parent.name}/{s.name}" for s in sources}
    windows = {name: spans for name, spans in windows.items() if name in ran}
    rows, missing = load_results(args.out, DETECTOR, windows)
    unlabelled = sorted(ran - windows.keys())
    n_windows = sum(len(spans) for spans in windows.values())
    print(
        f"{DETECTOR} on {args.data}: {len(sources)} files, {samples} rows, "
        f"{n_windows} windows (scores on a subset compare only with the same subset)"
    )
    if unlabelled:
        print(f"not scored (no labels): {', '.join(unlabelled)}")
    summary: dict[str, object] = {"files": len(sources), "rows": samples, "windows": n_windows}
    print(f"{'profile':20s} {'score':>7s}  threshold")
    for profile in PROFILES.values():
        result = score_corpus(rows, profile)
        print(f"{profile.name:20s} {result.normalised:7.2f}  {result.threshold:.4f}")
        summary[profile.name] = {"score": result.normalised, "threshold": result.threshold}
        if args.per_file and profile.name == "standard":
            for fs in per_file(rows, profile, result.threshold):
                print(
                    f"    {fs.file:58s} {fs.score:6.2f}  windows {fs.detected}/{fs.windows}"
                    f"  false-alarm rows {fs.false_alarms}"
                )
    us = seconds / samples * 1e6
    print(f"detector time: {us:.1f} µs/sample (update() only, {samples} samples)")
    summary["us_per_sample"] = us
    (args.out / f"{DETECTOR}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
