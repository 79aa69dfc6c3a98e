"""Showing ``LayerScores``: a rich table of ranked layers with a bar each, and a matplotlib plot."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

from rich.table import Table
from rich.text import Text

from goldenlayers.engine.ranking import oriented
from goldenlayers.files.outputs import output_path
from goldenlayers.locate.base import LayerScores, LayerStability, Locator
from goldenlayers.locate.fences import tukey_fences
from goldenlayers.locate.search import TRIAL_METRICS
from goldenlayers.locate.staged import TrialSummary

METRIC_NAMES = {"rewrite_accuracy": "rewrite accuracy", "overall": "Overall"}
BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int = 24) -> str:
    """A horizontal bar of ``fraction`` (clipped to 0..1) of ``width`` characters, in eighths."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def layer_table(scores: LayerScores, title: str | None = None) -> Table:
    """Kept layers best first, then the excluded ones; the golden layer and exclusions marked.

    A longer bar is a better layer, whichever end of the scores is best (a mean rank: the lowest):
    the bars run from the worst kept layer (empty) to the best (full), red where the score is
    negative; an excluded outlier beyond the best is drawn full and marked with an arrow.
    """
    if scores.golden_layer is None:  # not applicable: nothing to rank
        table = Table(title=title or f"{scores.method}: no layer")
        table.add_column("note")
        for note in scores.notes:
            table.add_row(note)
        return table
    # the locator's pick leads even where another layer's score is higher (a staged trial mean
    # over fewer requests); layers without a score (not tried) are counted below the table
    ranked = scores.ranking()
    kept = [layer for layer in dict.fromkeys([scores.golden_layer, *ranked])
            if layer == scores.golden_layer or math.isfinite(scores.scores[layer])]
    untried = [layer for layer in ranked if layer not in kept]
    excluded = sorted(scores.excluded, key=lambda layer: -abs(_finite(scores.scores[layer])))
    goodness = oriented(scores.scores, scores.higher_is_better)  # higher = better, NaN worst
    finite = [goodness[layer] for layer in kept if math.isfinite(goodness[layer])]
    worst, best = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = best - worst if best > worst else 1.0
    table = Table(title=title or f"{scores.method} layer scores: {scores.model}")
    # LGA's rank and vote readings score layers by mean rank (lowest best) or votes.
    score_name = {"mean-rank": "mean rank", "votes": "votes"}.get(
        scores.settings.get("combine", "sum"), "score")
    if scores.trials:
        score_name = f"trial {METRIC_NAMES[scores.trials.by]}"
    if untried:
        table.caption = f"{len(untried)} layers not tried: {', '.join(map(str, sorted(untried)))}"
    for column, justify in (("rank", "right"), ("layer", "right"), (score_name, "right"),
                            ("", "left"), ("", "left")):
        table.add_column(column, justify=justify)
    for rank, layer in enumerate(kept + excluded, start=1):
        value = scores.scores[layer]
        is_excluded = layer in scores.excluded
        fraction = max(0.0, (goodness[layer] - worst) / span)
        colour = "grey50" if is_excluded else ("red" if value < 0 else "green")
        if layer == scores.golden_layer:
            colour = "bold yellow"
        drawn = bar(fraction) + ("▶" if fraction > 1 else " ")
        mark = ("★ golden" if layer == scores.golden_layer
                else "excluded (outlier)" if is_excluded else "")
        table.add_row("–" if is_excluded else str(rank), str(layer), f"{value:.4g}",
                      Text(drawn, style=colour), mark)
    return table


def locators_table(locators: Mapping[str, type[Locator]]) -> Table:
    """Each registered locator's options and defaults, and whether the study runs it."""
    table = Table(title="Locators (goldenlayers locate --method NAME --option key=value)")
    for column in ("method", "study", "option", "default"):
        table.add_column(column)
    for name, cls in locators.items():
        for i, option in enumerate(dataclasses.fields(cls.settings_class)):
            default = (option.default_factory() if option.default is dataclasses.MISSING
                       else option.default)
            table.add_row(name if i == 0 else "", ("yes" if cls.in_study else "no") if i == 0 else "",
                          option.name, repr(default))
    return table


def stability_line(stability: LayerStability, requests: int, shown: int = 5) -> str:
    """E.g. "stability over 1000 bootstrap resamples of the 32 requests: layer 12: 64%, layer 10:
    22%, layer 3: 9%, 3 more layers: 5%" (the share of resamples each layer wins)."""
    shares = list(stability.win_share.items())
    parts = [f"layer {layer}: {share:.0%}" for layer, share in shares[:shown]]
    if len(shares) > shown:
        rest = sum(share for _, share in shares[shown:])
        parts.append(f"{len(shares) - shown} more layers: {rest:.0%}")
    requests = stability.requests if stability.requests is not None else requests
    return (f"stability over {stability.resamples} bootstrap resamples of the {requests} requests: "
            + ", ".join(parts))


def trial_lines(trials: TrialSummary) -> list[str]:
    """What the staged locate's trial edits found: the edits against the budget, the pick's and
    the runner-up's trial means with 95% intervals, and whether the trials separate the two."""
    lines = [f"trial edits: {trials.edits} of a budget of {trials.budget} ({trials.strategy}, "
             f"shortlist {trials.shortlist}, chosen by {METRIC_NAMES[trials.by]})"]
    tried = {t.layer: t for t in trials.layers}
    for role, layer in (("pick", trials.layer), ("runner-up", trials.runner_up)):
        if layer in tried:
            t = tried[layer]
            means = ", ".join(f"{METRIC_NAMES[m]} {t.means[k]:.3f} [{t.lows[k]:.3f}, "
                              f"{t.highs[k]:.3f}]" for k, m in enumerate(TRIAL_METRICS))
            lines.append(f"{role} layer {layer}: {means} over {t.edits} trial edits")
    if trials.separation_p_value is None:
        lines.append("pick vs runner-up: not testable (fewer than 2 requests tried at both)")
    else:
        detectable = (f"; the smallest difference it could detect: "
                      f"{trials.separation_detectable:.3f}"
                      if trials.separation_detectable is not None else "")
        verdict = "separated" if trials.separated else "not separated (a near-tie)"
        lines.append(f"pick vs runner-up on {METRIC_NAMES[trials.by]}: difference "
                     f"{trials.separation_difference:+.3f} over {trials.paired_requests} requests, "
                     f"paired t-test p = {trials.separation_p_value:.3f}: {verdict}{detectable}")
    return lines


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def plot_layer_scores(scores: LayerScores, path: str | Path) -> Path:
    """Bar chart of the score per layer: golden layer gold, excluded layers hatched grey, the fences
    dashed where the method used them. Outliers beyond the kept layers' range are clipped, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    layers = range(scores.num_layers)
    colours = ["goldenrod" if layer == scores.golden_layer else
               "lightgrey" if layer in scores.excluded else "steelblue" for layer in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * scores.num_layers), 3.6))
    values = [_finite(v) for v in scores.scores]
    bars = ax.bar(list(layers), values, color=colours, edgecolor="black", linewidth=0.4)
    for layer in scores.excluded:
        bars[layer].set_hatch("//")
    low, high = _visible_range(scores, values)
    ax.set_ylim(low, high)
    for layer in scores.excluded:
        if not low <= values[layer] <= high:
            ax.annotate(f"{values[layer]:.3g}", (layer, high if values[layer] > high else low),
                        ha="center", va="top" if values[layer] > high else "bottom", fontsize=7,
                        bbox=dict(facecolor="white", edgecolor="none", pad=1.0))
    fence_k = scores.settings.get("fence_k")
    # LGA's fences are taken on the summed similarity: they are lines on these scores only for sums.
    if fence_k is not None and scores.settings.get("combine", "sum") == "sum":
        for fence in tukey_fences(scores.scores, fence_k):
            ax.axhline(fence, linestyle="--", linewidth=0.8, color="grey")
    ax.legend(handles=[Patch(facecolor="goldenrod", label="golden"),
                       Patch(facecolor="steelblue", label="kept"),
                       Patch(facecolor="lightgrey", hatch="//", label="excluded")],
              fontsize=7, loc="best")
    ax.set_xlabel("layer")
    ax.set_ylabel("score")
    ax.set_title(f"{scores.method}: {scores.model}, golden layer {scores.golden_layer}"
                 + (f", {len(scores.excluded)} excluded" if scores.excluded else ""))
    ax.set_xticks(list(layers))
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    path = Path(path)
    try:
        with output_path(path) as staging:
            fig.savefig(staging, dpi=150, format=path.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    return path


def _visible_range(scores: LayerScores, values: list[float]) -> tuple[float, float]:
    """y-limits that show the kept layers fully (and zero); clipped outliers are labelled."""
    kept = [values[layer] for layer in scores.ranking()] or values
    low, high = min(0.0, *kept), max(0.0, *kept)
    margin = 0.15 * (high - low or 1.0)
    return low - (margin if low < 0 else 0.0), high + margin


def metrics_table(rows, layer: int, editor: str) -> Table:
    """Per-request metrics (engine ``CellRow``s) of edits at one layer, with each mean and its
    bootstrap 95% interval over the requests."""
    from goldenlayers.engine import CELL_METRICS
    from goldenlayers.evaluate import bootstrap_interval

    names = [name for name in CELL_METRICS if any(name in r.metrics for r in rows)]
    table = Table(title=f"{editor} edits of {len(rows)} held-out requests at layer {layer}")
    table.add_column("case")
    for name in names:
        table.add_column(name.replace("_", " "), justify="right")
    for row in rows:
        cells = ("–" if name not in row.metrics else f"{row.metrics[name]:.3f}" for name in names)
        table.add_row(row.key.case_id, *cells, *([row.error] if row.error else []))
    intervals = [bootstrap_interval([r.metrics[n] for r in rows if n in r.metrics]) for n in names]
    table.add_row("mean [95% CI]", *(i.describe() for i in intervals), style="bold")
    return table
