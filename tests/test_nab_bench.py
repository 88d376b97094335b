"""benchmarks/nab.py on a tiny NAB-format folder written here (no NAB data needed):
results files in NAB's layout for both columns, the fold table, the summary."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks import false_pages, nab

START = datetime(2014, 4, 1)
STEP = timedelta(minutes=5)
N = 4 * 288  # four days


def write_series(path: Path, jump_at: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        for i in range(N):
            value = 50 + 10 * math.sin(i / 288 * 2 * math.pi) + 3 * math.sin(i * 0.7)
            if jump_at is not None and i >= jump_at:
                value += 200
            w.writerow([(START + i * STEP).strftime("%Y-%m-%d %H:%M:%S"), f"{value:.3f}"])


def test_nab_benchmark_writes_nab_results_and_scores_both_columns(tmp_path: Path,
                                                                  capsys) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    write_series(data / "synthA" / "a.csv", 3 * 288)
    write_series(data / "synthB" / "b.csv", 3 * 288 + 100)
    write_series(data / "quiet" / "q.csv", None)
    window = lambda i: [str(START + (i - 20) * STEP), str(START + (i + 40) * STEP)]  # noqa: E731
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "windows.json").write_text(json.dumps({
        "synthA/a.csv": [window(3 * 288)], "synthB/b.csv": [window(3 * 288 + 100)],
        "quiet/q.csv": []}))
    out = tmp_path / "out"
    assert nab.main(["--data", str(data), "--out", str(out), "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("onwatch", "onwatch_decisions"):
        path = out / name / "synthA" / f"{name}_a.csv"
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["timestamp", "value", "anomaly_score"]
        assert len(rows) == N
        assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    summary = json.loads((out / "onwatch_summary.json").read_text())
    # Both jumps are found at once by both columns; the quiet file is never a fold.
    assert set(summary["folds"]) == {"synthA", "synthB"}
    assert summary["standard"]["score"] > 90 and summary["standard"]["decisions"] > 80
    assert "fold mean" in printed and "decisions" in printed and "µs/sample" in printed


def test_false_pages_counts_incidents_of_the_decision_path() -> None:
    """The healthy checks page nothing; the control with 1 run in 5 failing pages."""
    lines = false_pages.report(None, checks=2, days=5)
    assert lines[-1].split("target")[0].count(" 0 degraded incidents") == 1, lines[-1]
    control = next(line for line in lines if "1 run in 5" in line)
    assert "[1, 1]" in control, control
