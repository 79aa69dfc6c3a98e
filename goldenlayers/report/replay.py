"""A replay's tables and figure: regret against trial edits spent, per pair and strategy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from goldenlayers.locate.search import TRIAL_METRICS
from goldenlayers.files.atomic import atomic_path
from goldenlayers.study.replay import Outcome

SHORT = {"rewrite_accuracy": "RwA", "overall": "Overall"}


def outcome_row(outcome: Outcome) -> str:
    """One markdown row: strategy, edits, then mean / median / p95 regret per metric."""
    cells = [outcome.strategy.label, f"{outcome.mean_edits:.0f}"]
    for metric in TRIAL_METRICS:
        cells.append(f"{outcome.mean(metric):.3f} / {outcome.median(metric):.3f} / "
                     f"{outcome.p95(metric):.3f}")
    top = ", ".join(f"{layer} ({share:.0%})" for layer, share in
                    list(outcome.layer_shares().items())[:3])
    return "| " + " | ".join([*cells, top]) + " |"


def outcomes_table(outcomes: Sequence[Outcome]) -> list[str]:
    """A markdown table of one pair's outcomes."""
    metrics = " | ".join(f"{SHORT[m]} regret mean / median / p95" for m in TRIAL_METRICS)
    return [f"| strategy | edits | {metrics} | layers chosen most |",
            "|---|---|" + "---|" * len(TRIAL_METRICS) + "---|",
            *(outcome_row(o) for o in outcomes)]


def plot_replay(outcomes: Sequence[Outcome], metric: str, path: str | Path,
                highlight: str | None = None) -> Path:
    """Mean regret of ``metric`` against mean trial edits spent: one panel per pair, one curve
    per halving strategy (shortlist size and ranking metric; its budgets joined), one marker per
    strategy without a budget, brute force at its cost. ``highlight``: a strategy label drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys(o.pair for o in outcomes))
    columns = min(4, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, pair in zip(axes.flat, pairs):
        _panel(axis, [o for o in outcomes if o.pair == pair], metric, highlight)
        axis.set_title(pair, fontsize=9)
    for axis in list(axes.flat)[len(pairs):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper right")
    figure.supxlabel("trial edits spent (mean over draws; log scale)")
    figure.supylabel(f"mean {SHORT[metric]} regret on the requests left out")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    plt.close(figure)
    return Path(path)


def _panel(axis, outcomes: Sequence[Outcome], metric: str, highlight: str | None) -> None:
    curves: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        s = outcome.strategy
        if s.name.endswith("halving"):
            curves.setdefault(f"{s.name} m{s.shortlist} by {SHORT[s.by]}", []).append(outcome)
    for label, group in curves.items():
        group = sorted(group, key=lambda o: o.mean_edits)
        bold = highlight is not None and any(o.strategy.label == highlight for o in group)
        axis.plot([o.mean_edits for o in group], [o.mean(metric) for o in group],
                  marker="." if not bold else "o", linewidth=2.5 if bold else 0.8,
                  alpha=1.0 if bold else 0.45, label=label if bold or "m6" in label else None)
    for outcome in outcomes:
        s = outcome.strategy
        if not s.name.endswith("halving"):
            x = max(outcome.mean_edits, 1.0)  # a strategy with no edits sits at the left edge
            axis.scatter([x], [outcome.mean(metric)], marker="s" if s.name == "brute-force" else "^",
                         s=30, zorder=3, label=s.name if s.name != "brute-force" or s.by == metric
                         else None)
    axis.set_xscale("log")
    axis.grid(alpha=0.3)
