"""The agent's anomaly detector on the Numenta Anomaly Benchmark (NAB), scored NAB's way.

Run (from the repository root):

    python3 benchmarks/nab.py --data ../shared/nab/data --out /tmp/nab-results
    python3 benchmarks/nab.py --data DIR --out RESULTS [--labels LABELS_DIR] [--per-file]
                              [--grid] [--decision-grid] [--set name=value ...] [--jobs 2]

What it does: every DIR/<category>/<file>.csv (columns timestamp,value) is fed
row by row, with the row's time, through two things the agent runs:

- `onwatch`: one `agent.detect.baseline.Baseline()` with the defaults a user
  gets; the anomaly_score is its raw score, computed before it learns the row;
- `onwatch_decisions`: the runner's own detection pipeline
  (`agent.detect.pipeline.step`, defaults, the value as an observation with a
  baseline, so a sustained change either way counts): anomaly_score is 1 on
  the row where a "degraded" incident would open, else 0.

Both are written as NAB results, RESULTS/<detector>/<category>/<detector>_<file>.csv
(timestamp,value,anomaly_score), which NAB's own scorer reads, and scored here
by benchmarks/nab_score.py against LABELS_DIR/windows.json (default
DIR/../labels). Printed: the leave-one-category-out table (docs/detection.md:
the threshold, and with --grid the candidate parameters, are chosen on the
other categories and the held-out one is scored), the fold mean beside the
full-subset score, all three profiles for both columns, and µs per sample.
Decisions are scored as they are (threshold 0.5 on a 0/1 score): the agent
has no threshold to tune after the fact; with --decision-grid the candidate
decision parameters (DECISION_GRID, `agent.detect.degraded.DegradedParams`)
are chosen per fold on the other categories in the same way.
RESULTS/onwatch_summary.json holds the same figures.

Scores on a subset of NAB are comparable with other detectors scored on the
same subset, not with NAB's whole-corpus scoreboard.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.detect import degraded, pipeline  # noqa: E402
from agent.detect.baseline import Baseline, BaselineParams  # noqa: E402
from benchmarks import nab_folds  # noqa: E402
from benchmarks.nab_score import (  # noqa: E402
    PROFILES,
    Row,
    load_windows,
    parse_time,
    per_file,
    score_at,
    score_corpus,
    sweep_file,
)
from checks.result import CheckResult  # noqa: E402

DETECTOR = "onwatch"
DECISIONS = "onwatch_decisions"
#: The candidates of --grid: one knob at a time around the defaults (docs/detection.md).
GRID: dict[str, dict[str, float]] = {
    "defaults": {},
    "level 7.5m": {"level_halflife_s": 450.0},
    "level 30m": {"level_halflife_s": 1800.0},
    "spread 2h": {"spread_halflife_s": 7200.0},
    "spread 18h": {"spread_halflife_s": 64800.0},
    "short 2.5m": {"short_halflife_s": 150.0},
    "short 10m": {"short_halflife_s": 600.0},
    "long 12h": {"long_halflife_s": 43200.0},
    "long 3d": {"long_halflife_s": 259200.0},
    "holdoff 1h": {"holdoff_s": 3600.0},
    "holdoff 6h": {"holdoff_s": 21600.0},
    "peak off": {"peak_margin": 0.0},
    "peak 2": {"peak_margin": 2.0},
    "peak 4": {"peak_margin": 4.0},
    "peak 2d": {"peak_halflife_days": 2.0},
    "peak 20d": {"peak_halflife_days": 20.0},
    "zcap 3": {"z_cap": 3.0},
    "zcap 6": {"z_cap": 6.0},
    "season 1d": {"season_halflife_days": 1.0},
    "season 7d": {"season_halflife_days": 7.0},
    "range 0": {"range_tolerance": 0.0},
    "range 0.15": {"range_tolerance": 0.15},
}

#: The candidates of --decision-grid: one DegradedParams knob at a time around the defaults.
DECISION_GRID: dict[str, dict[str, float | bool]] = {
    "defaults": {},
    "threshold 0.1": {"threshold": 0.1},
    "threshold 0.3": {"threshold": 0.3},
    "threshold 0.5": {"threshold": 0.5},
    "share 0.75": {"share": 0.75},
    "ratio 1.25": {"ratio": 1.25},
    "ratio 2": {"ratio": 2.0},
    "spreads 2": {"spreads": 2.0},
    "spreads 4": {"spreads": 4.0},
    "sustain 15m": {"sustain_s": 900.0},
    "sustain 20m": {"sustain_s": 1200.0},
    "sustain 30m": {"sustain_s": 1800.0},
    "quiet 0": {"quiet_s": 0.0},
    "quiet 3h": {"quiet_s": 10800.0},
    "quiet 24h": {"quiet_s": 86400.0},
    "calm off": {"calm_halflife_s": 0.0},
    "calm 6h": {"calm_halflife_s": 21600.0},
    "calm 3d": {"calm_halflife_s": 259200.0},
    "rises only": {"falls": False},
}


def read_series(source: Path) -> tuple[list[str], list[str], list[float], list[float]]:
    with source.open(newline="") as f:
        rows = [(r["timestamp"], r["value"]) for r in csv.DictReader(f)]
    stamps = [ts for ts, _ in rows]
    times = [parse_time(ts).replace(tzinfo=UTC).timestamp() for ts in stamps]
    return stamps, [v for _, v in rows], times, [float(v) for _, v in rows]


def raw_scores(times: list[float], values: list[float], params: BaselineParams
               ) -> tuple[list[float], float]:
    update = Baseline(params=params).update
    started = time.perf_counter()
    scores = [update(t, v) for t, v in zip(times, values, strict=True)]
    return scores, time.perf_counter() - started


def decision_scores(times: list[float], values: list[float], params: BaselineParams,
                    decide: dict[str, float | bool] | None = None
                    ) -> tuple[list[float], float]:
    """1.0 where the runner's detection pipeline opens a degraded incident, else 0.0.

    The value is what a check reports as an observation with a baseline
    (`baseline_observations = ["value"]`), every run successful; `decide`
    overrides the observation's DegradedParams (--decision-grid)."""
    st = pipeline.CheckState()
    p = pipeline.Params(baseline=False, baseline_observations=("value",))
    if decide:
        p = replace(p, observation=replace(p.observation, **decide))  # type: ignore[arg-type]
    if params != BaselineParams():
        st.baselines["value"] = degraded.DegradedState(baseline=Baseline(params=params))
    step = pipeline.step
    started = time.perf_counter()
    out = []
    for t, v in zip(times, values, strict=True):
        was = bool(st.degraded_now)
        got = step(st, "nab", CheckResult(True, 0.0, "ok", checked_at=t,
                                          observations={"value": v}), p, now=t, hold=None)
        opened = not was and any(isinstance(s, pipeline.Degraded) and s.degraded
                                 for s in got.signals)
        out.append(1.0 if opened else 0.0)
    return out, time.perf_counter() - started


def write_results(target: Path, stamps: list[str], values: list[str], scores: list[float]
                  ) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        writer.writerows(zip(stamps, values, (repr(s) for s in scores), strict=True))


def run_file(source: Path, out: Path | None, overrides: dict[str, float],
             decisions: bool, raw: bool = True, decide: dict[str, float | bool] | None = None
             ) -> tuple[list[float], list[float], float, float]:
    """One series: (raw scores, decision scores, seconds raw, seconds decisions)."""
    stamps, texts, times, values = read_series(source)
    params = replace(BaselineParams(), **overrides)  # type: ignore[arg-type]
    raw_sc, raw_s = raw_scores(times, values, params) if raw else ([], 0.0)
    dec, dec_s = decision_scores(times, values, params, decide) if decisions else ([], 0.0)
    if out is not None:
        for name, scores in ((DETECTOR, raw_sc), (DECISIONS, dec)):
            write_results(out / name / source.parent.name / f"{name}_{source.name}",
                          stamps, texts, scores)
    return raw_sc, dec, raw_s, dec_s


def parse_overrides(pairs: list[str]) -> dict[str, float]:
    known = {f.name: f.type for f in fields(BaselineParams)}
    out: dict[str, float] = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in known or not text:
            raise SystemExit(f"--set {pair}: expected name=value, name one of {sorted(known)}")
        out[name] = int(text) if known[name] in ("int", int) else float(text)
    return out


def rows_for(sources: list[Path], scores: list[list[float]], stamps: dict[Path, list[datetime]],
             windows: dict[str, list[tuple[datetime, datetime]]]) -> list[Row]:
    rows: list[Row] = []
    for source, file_scores in zip(sources, scores, strict=True):
        name = f"{source.parent.name}/{source.name}"
        rows.extend(sweep_file(name, stamps[source], file_scores, windows.get(name, [])))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    default_data = ROOT.parent / "shared" / "nab" / "data"
    parser.add_argument("--data", type=Path,
                        default=default_data if default_data.is_dir() else None,
                        help="NAB-layout folder: DATA/<category>/<file>.csv")
    parser.add_argument("--out", type=Path, required=True, help="results folder to write")
    parser.add_argument("--labels", type=Path, help="folder with windows.json (DATA/../labels)")
    parser.add_argument("--per-file", action="store_true", help="print each file's share")
    parser.add_argument("--grid", action="store_true",
                        help="also choose among the GRID candidates per fold")
    parser.add_argument("--decision-grid", action="store_true",
                        help="also choose among the DECISION_GRID candidates per fold")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a BaselineParams default (experiments)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)
    if args.data is None or not args.data.is_dir():
        parser.error("--data: no NAB data folder given or found")
    labels = args.labels or args.data.parent / "labels"
    if not (labels / "windows.json").is_file():
        parser.error(f"--labels: no windows.json in {labels}")
    sources = sorted(args.data.glob("*/*.csv"))
    if not sources:
        parser.error(f"--data: no <category>/<file>.csv under {args.data}")
    overrides = parse_overrides(args.set)
    windows = load_windows(labels)
    unlabelled = [s for s in sources if f"{s.parent.name}/{s.name}" not in windows]
    sources = [s for s in sources if s not in unlabelled]
    stamps = {s: [parse_time(ts) for ts in read_series(s)[0]] for s in sources}

    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        main_runs = list(pool.map(run_file, sources, [args.out] * len(sources),
                                  [overrides] * len(sources), [True] * len(sources)))
        grid: dict[str, list[Row]] = {}
        if args.grid:
            for name, extra in GRID.items():
                cand = {**overrides, **extra}
                got = list(pool.map(run_file, sources, [None] * len(sources),
                                    [cand] * len(sources), [False] * len(sources)))
                grid[name] = rows_for(sources, [g[0] for g in got], stamps, windows)
        dgrid: dict[str, list[Row]] = {}
        for name, decide in DECISION_GRID.items() if args.decision_grid else ():
            got = list(pool.map(run_file, sources, [None] * len(sources),
                                [overrides] * len(sources), [True] * len(sources),
                                [False] * len(sources), [decide] * len(sources)))
            dgrid[name] = rows_for(sources, [g[1] for g in got], stamps, windows)

    raw_rows = rows_for(sources, [r[0] for r in main_runs], stamps, windows)
    dec_rows = rows_for(sources, [r[1] for r in main_runs], stamps, windows)
    samples = sum(len(r[0]) for r in main_runs)
    n_windows = nab_folds.count_windows(raw_rows)
    print(f"{DETECTOR} on {args.data}: {len(sources)} files, {samples} rows, {n_windows} "
          "windows (scores on a subset compare only with the same subset)")
    if unlabelled:
        print(f"not scored (no labels): {', '.join(str(u) for u in unlabelled)}")
    if overrides:
        print(f"parameters changed from the defaults: {overrides}")
    summary: dict[str, object] = {"files": len(sources), "rows": samples, "windows": n_windows,
                                  "overrides": overrides}
    standard = PROFILES["standard"]
    full = score_corpus(raw_rows, standard)
    folds = nab_folds.leave_one_out({"defaults": raw_rows}, standard)
    print(nab_folds.table("raw scores, leave one category out (standard; threshold chosen on "
                          "the other categories)", folds, full.normalised, full.threshold))
    dec_full = score_at(dec_rows, standard, 0.5)
    dec_folds = nab_folds.fixed_folds(dec_rows, standard, 0.5)
    print(nab_folds.table("decisions (degraded incident opened), per category (standard)",
                          dec_folds, dec_full.normalised, 0.5))
    summary["folds"] = {f.category: f.held_out for f in folds}
    summary["fold_mean"] = nab_folds.fold_mean(folds)
    summary["decision_folds"] = {f.category: f.held_out for f in dec_folds}
    summary["decision_fold_mean"] = nab_folds.fold_mean(dec_folds)
    if grid:
        print(grid_report(grid, summary))
    if dgrid:
        print(nab_folds.decision_grid_report(dgrid, standard, summary))

    print(f"{'profile':20s} {'raw':>7s}  {'threshold':9s} {'decisions':>9s}")
    for profile in PROFILES.values():
        result = score_corpus(raw_rows, profile)
        dec = score_at(dec_rows, profile, 0.5)
        print(f"{profile.name:20s} {result.normalised:7.2f}  {result.threshold:9.4f} "
              f"{dec.normalised:9.2f}")
        summary[profile.name] = {"score": result.normalised, "threshold": result.threshold,
                                 "decisions": dec.normalised}
    if args.per_file:
        for label, rows, thr in (("raw", raw_rows, full.threshold), ("decisions", dec_rows, 0.5)):
            print(f"per file, {label} (standard, threshold {thr:.4f})")
            for fs in per_file(rows, standard, thr):
                print(f"    {fs.file:58s} {fs.score:6.2f}  windows {fs.detected}/{fs.windows}"
                      f"  false-alarm rows {fs.false_alarms}")
    raw_us = sum(r[2] for r in main_runs) / samples * 1e6
    dec_us = sum(r[3] for r in main_runs) / samples * 1e6
    print(f"detector time: {raw_us:.1f} µs/sample (Baseline.update), {dec_us:.1f} µs/sample "
          f"(decision path), {samples} samples")
    summary["us_per_sample"] = raw_us
    summary["decision_us_per_sample"] = dec_us
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{DETECTOR}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def grid_report(grid: dict[str, list[Row]], summary: dict[str, object]) -> str:
    """Each candidate's folds (threshold chosen per fold), and the per-fold choice."""
    standard = PROFILES["standard"]
    lines = ["candidates (--grid): held-out score per fold, threshold chosen on the others"]
    per: dict[str, float] = {}
    for name, rows in grid.items():
        folds = nab_folds.leave_one_out({name: rows}, standard)
        per[name] = nab_folds.fold_mean(folds)
        cells = "  ".join(f"{f.category[:14]:>14s} {f.held_out:6.2f}" for f in folds)
        lines.append(f"  {name:12s} {cells}  mean {per[name]:6.2f}  "
                     f"full {score_corpus(rows, standard).normalised:6.2f}")
    best = max(per, key=lambda n: per[n])
    lines.append(f"  best fold mean: {best} ({per[best]:.2f})")
    chosen = nab_folds.leave_one_out(grid, standard)
    lines.append(nab_folds.table("candidates AND threshold chosen on the other categories",
                                 chosen, score_corpus(grid[best], standard).normalised,
                                 score_corpus(grid[best], standard).threshold))
    summary["grid_fold_means"] = per
    summary["grid_selected_fold_mean"] = nab_folds.fold_mean(chosen)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
