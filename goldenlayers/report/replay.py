"""A replay's tables and figure: regret against trial edits spent, per pair and strategy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from goldenlayers.files.atomic import atomic_path
from goldenlayers.locate.search import COPIED_LAYER, TRIAL_METRICS
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


STYLE = {"lga-halving": "tab:green", "sweep-halving": "tab:blue"}
MARKERS = {"lga": ("^", "tab:red", "LGA alone"), "copied": ("^", "tab:orange", f"copied layer {COPIED_LAYER}"),
           "middle": ("^", "tab:gray", "middle layer")}


def plot_replay(outcomes: Sequence[Outcome], metric: str, path: str | Path,
                highlight: str | None = None) -> Path:
    """Mean regret of ``metric`` against mean trial edits spent: one panel per pair, one curve
    per halving strategy and ranking metric (its budgets joined) at the highlighted strategy's
    shortlist size, one marker per strategy without edits (at 0), brute force by each metric at
    its cost. ``highlight``: a strategy label drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the highlighted configuration on every panel (its budget in edits differs with the depth)
    chosen = next((o.strategy for o in outcomes if o.strategy.label == highlight), None)
    shortlist = chosen.shortlist if chosen else 6
    bold = (chosen.name, chosen.by) if chosen else None
    pairs = list(dict.fromkeys(o.pair for o in outcomes))
    columns = min(4, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, pair in zip(axes.flat, pairs):
        _panel(axis, [o for o in outcomes if o.pair == pair], metric, bold, shortlist)
        axis.set_title(pair, fontsize=9)
    for axis in list(axes.flat)[len(pairs):]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=7, loc="lower right", bbox_to_anchor=(0.98, 0.08))
    figure.supxlabel("trial edits spent (mean over draws; 0, then log scale)")
    figure.supylabel(f"mean {SHORT[metric]} regret on the requests left out")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    plt.close(figure)
    return Path(path)


def _panel(axis, outcomes: Sequence[Outcome], metric: str, highlight: tuple[str, str] | None,
           shortlist: int) -> None:
    curves: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        s = outcome.strategy
        if s.name.endswith("halving") and s.shortlist == shortlist:
            curves.setdefault((s.name, s.by), []).append(outcome)
    for (name, by), group in curves.items():
        group = sorted(group, key=lambda o: o.mean_edits)
        bold = (name, by) == highlight
        axis.plot([o.mean_edits for o in group], [o.mean(metric) for o in group],
                  color=STYLE[name], linestyle="-" if by == "rewrite_accuracy" else "--",
                  marker="o" if bold else ".", linewidth=2.5 if bold else 1.0,
                  label=f"{name} m{shortlist} by {SHORT[by]}" + (" (default)" if bold else ""))
    for outcome in outcomes:
        s = outcome.strategy
        if s.name == "brute-force":
            axis.scatter([outcome.mean_edits], [outcome.mean(metric)], marker="s", s=30, zorder=3,
                         color="black" if s.by == "rewrite_accuracy" else "white",
                         edgecolors="black", label=f"brute force by {SHORT[s.by]}")
        elif s.name in MARKERS:
            marker, color, label = MARKERS[s.name]
            axis.scatter([0], [outcome.mean(metric)], marker=marker, s=30, zorder=3, color=color,
                         label=f"{label} (0 edits)")
    axis.set_xscale("symlog", linthresh=10)
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
