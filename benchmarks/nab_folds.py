"""Leave one category out: an estimate of how a detector scores on NAB data it never saw.

Contract:
    folds = leave_one_out(rows_by_candidate, profile)   # one Fold per labelled category
    mean = fold_mean(folds)

NAB's own scorer picks one threshold for the whole corpus it scores; a
detector's other constants were picked by its authors, on whatever data they
had. Both choices look better on the data they were made on. Here every
choice is made without the category it is judged on: for each category with
windows (a fold), the candidate parameters and the threshold that score best
on all the *other* categories are chosen, and the held-out category is scored
with them. Categories without windows (artificialNoAnomaly) can only cost
false alarms: they are in every fold's training data, never a fold.

`rows_by_candidate` maps a candidate's name to its scorable rows (from
`nab_score.sweep_file`, whose `file` is "category/file.csv"); with one
candidate only the threshold is chosen per fold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks.nab_score import Profile, Row, count_windows, score_at, score_corpus


@dataclass(frozen=True, slots=True)
class Fold:
    category: str
    #: The candidate and threshold chosen on the other categories.
    candidate: str
    threshold: float
    #: Normalised score on the other categories with that choice.
    train: float
    #: Normalised score of the held-out category with that choice: the estimate.
    held_out: float
    #: The held-out category with its own best threshold (what NAB's scorer would
    #: report on it alone; always >= held_out).
    own_threshold: float
    #: Rows of the window-less categories at or above the threshold.
    no_anomaly_alarms: int
    windows: int


def category(row: Row) -> str:
    return row.file.partition("/")[0]


def split(rows: Sequence[Row], held_out: str) -> tuple[list[Row], list[Row]]:
    train = [r for r in rows if category(r) != held_out]
    return train, [r for r in rows if category(r) == held_out]


def fold_categories(rows: Sequence[Row]) -> list[str]:
    """The categories with at least one scorable window, in name order."""
    return sorted({category(r) for r in rows if r.window is not None})


def leave_one_out(rows_by_candidate: Mapping[str, Sequence[Row]], profile: Profile
                  ) -> list[Fold]:
    if not rows_by_candidate:
        raise ValueError("leave_one_out: no candidates")
    some = next(iter(rows_by_candidate.values()))
    labelled = set(fold_categories(some))
    window_less = {category(r) for r in some} - labelled
    folds: list[Fold] = []
    for held in sorted(labelled):
        best: tuple[float, str, float] | None = None
        for name, rows in rows_by_candidate.items():
            train, _ = split(rows, held)
            result = score_corpus(train, profile)
            if best is None or result.normalised > best[0]:
                best = (result.normalised, name, result.threshold)
        assert best is not None
        train_score, name, threshold = best
        _, test = split(rows_by_candidate[name], held)
        alarms = sum(1 for r in rows_by_candidate[name]
                     if category(r) in window_less and r.score >= threshold)
        folds.append(Fold(held, name, threshold, train_score,
                          score_at(test, profile, threshold).normalised,
                          score_corpus(test, profile).normalised, alarms,
                          count_windows(test)))
    return folds


def fixed_folds(rows: Sequence[Row], profile: Profile, threshold: float) -> list[Fold]:
    """Every fold at one given threshold (decisions: an incident opened or it did not)."""
    labelled = fold_categories(rows)
    window_less = {category(r) for r in rows} - set(labelled)
    alarms = sum(1 for r in rows if category(r) in window_less and r.score >= threshold)
    out: list[Fold] = []
    for held in labelled:
        train, test = split(rows, held)
        at = score_at(test, profile, threshold).normalised
        out.append(Fold(held, "-", threshold, score_at(train, profile, threshold).normalised,
                        at, at, alarms, count_windows(test)))
    return out


def fold_mean(folds: Sequence[Fold]) -> float:
    return sum(f.held_out for f in folds) / len(folds) if folds else 0.0


def table(title: str, folds: Sequence[Fold], full: float, full_threshold: float) -> str:
    """The fold table as printed by benchmarks/nab.py."""
    lines = [title,
             f"  {'held-out category':24s} {'windows':>7s} {'chosen':>12s} {'threshold':>9s} "
             f"{'train':>6s} {'HELD-OUT':>8s} {'own thr':>7s} {'no-anom alarms':>14s}"]
    for f in folds:
        lines.append(f"  {f.category:24s} {f.windows:7d} {f.candidate:>12s} {f.threshold:9.4f} "
                     f"{f.train:6.2f} {f.held_out:8.2f} {f.own_threshold:7.2f} "
                     f"{f.no_anomaly_alarms:14d}")
    lines.append(f"  {'fold mean':24s} {'':7s} {'':12s} {'':9s} {'':6s} "
                 f"{fold_mean(folds):8.2f}")
    lines.append(f"  {'full subset':24s} {'':7s} {'':12s} {full_threshold:9.4f} {'':6s} "
                 f"{full:8.2f}")
    return "\n".join(lines)


def decision_grid_report(grid: Mapping[str, Sequence[Row]], profile: Profile,
                         summary: dict[str, object]) -> str:
    """Decision candidates (0/1 scores, threshold 0.5): each one's folds, and the
    candidate chosen per fold on the other categories, scored on the held-out one."""
    lines = ["decision candidates (--decision-grid): held-out score per fold"]
    means: dict[str, float] = {}
    for name, rows in grid.items():
        folds = fixed_folds(rows, profile, 0.5)
        means[name] = fold_mean(folds)
        cells = "  ".join(f"{f.category[:14]:>14s} {f.held_out:6.2f}" for f in folds)
        lines.append(f"  {name:14s} {cells}  mean {means[name]:6.2f}  "
                     f"full {score_at(rows, profile, 0.5).normalised:6.2f}")
    some = next(iter(grid.values()))
    chosen = []
    for held in fold_categories(some):
        name = max(grid, key=lambda n: score_at(split(grid[n], held)[0], profile,
                                                0.5).normalised)
        score = score_at(split(grid[name], held)[1], profile, 0.5).normalised
        chosen.append(score)
        lines.append(f"  fold {held}: chosen on the others {name!r}, held-out {score:6.2f}")
    lines.append(f"  candidates chosen on the other categories: fold mean "
                 f"{sum(chosen) / len(chosen):6.2f}")
    summary["decision_grid_fold_means"] = means
    summary["decision_grid_selected_fold_mean"] = sum(chosen) / len(chosen)
    return "\n".join(lines)
