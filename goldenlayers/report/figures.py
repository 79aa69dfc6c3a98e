"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from goldenlayers.locate.base import locator_class, study_locators  # noqa: E402
from goldenlayers.study.analysis import PRIMARY, StudyResults  # noqa: E402

COLOURS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def heatmap(results: StudyResults) -> bytes:
    """Test rewrite accuracy per layer and data set (the study's layers); stars: test-optimal
    layers; yellow band: the proxy-union golden layer; boxes: each data set's proxy golden layer."""
    layers = sorted(set().union(*(results.test[d].layers for d in results.datasets)))
    values = np.array([[results.test[d].score_at(PRIMARY, layer) if layer in results.test[d].layers
                        else np.nan for layer in layers] for d in results.datasets])
    figure, axis = plt.subplots(figsize=(max(6, 0.45 * len(layers) + 2), 0.6 * len(results.datasets) + 1.6))
    image = axis.imshow(values, aspect="auto", cmap="Blues", vmin=0, vmax=max(1e-9, float(np.nanmax(values))))
    figure.colorbar(image, ax=axis, label="test rewrite accuracy")
    if results.union_layer is not None and results.union_layer in layers:
        column = layers.index(results.union_layer)
        axis.axvspan(column - 0.5, column + 0.5, facecolor="gold", alpha=0.45, edgecolor="darkorange",
                     linewidth=2, zorder=2)
    for row, dataset in enumerate(results.datasets):
        for layer in results.test[dataset].optimal_layers(PRIMARY):
            if layer in layers:
                axis.plot(layers.index(layer), row, marker="*", color="red", markersize=12, zorder=4)
        proxy_layer = results.proxy[dataset].golden_layer(PRIMARY)
        if proxy_layer in layers:
            axis.add_patch(Rectangle((layers.index(proxy_layer) - 0.5, row - 0.5), 1, 1, fill=False,
                                     edgecolor="black", linewidth=2, zorder=3))
    axis.set_xticks(range(len(layers)), [str(layer) for layer in layers])
    axis.set_yticks(range(len(results.datasets)), list(results.datasets))
    axis.set_xlabel("layer")
    axis.set_title("Test rewrite accuracy: ★ test-optimal, band = proxy-union golden, box = proxy golden",
                   fontsize=9)
    return png(figure)


def layer_scores(results: StudyResults, dataset: str) -> bytes:
    """Brute-force accuracy per layer (with 95% intervals) beside each locator's scores."""
    methods = study_locators()
    figure, axes = plt.subplots(1 + len(methods), 1, figsize=(7, 6.5 * (1 + len(methods)) / 3),
                                sharex=True, squeeze=False)
    axes = axes[:, 0]
    for split, grid in (("test", results.test[dataset]), ("proxy", results.proxy[dataset])):
        intervals = results.layer_means[(dataset, split)][PRIMARY]
        means = np.array([i.mean for i in intervals])
        errors = np.array([[i.mean - i.low for i in intervals], [i.high - i.mean for i in intervals]])
        axes[0].errorbar(grid.layers, means, yerr=errors, marker="o", capsize=2,
                         label=f"{split} set (n = {len(grid.case_ids)})")
    axes[0].set_ylabel("BF rewrite acc.")
    axes[0].legend(fontsize=8)
    for axis, method, colour in zip(axes[1:], methods, COLOURS):
        _locator_scores(axes, axis, results.locators.get((dataset, method)),
                        locator_class(method).score_label, colour)
    axes[-1].set_xlabel("layer (dashed: " + ", ".join(
        f"{m.upper()} {c.removeprefix('tab:')}" for m, c in zip(methods, COLOURS)) + ")")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title(f"{dataset}: per-layer scores", fontsize=10)
    return png(figure)


def _locator_scores(axes, axis, scores, label: str, colour: str) -> None:
    """One locator's scores on ``axis``, its layer dashed on every axis."""
    axis.set_ylabel(label)
    if scores is None:
        return
    axis.plot(np.arange(len(scores.scores)), scores.scores, marker="o", color=colour)
    if scores.excluded:
        axis.scatter(scores.excluded, [scores.scores[layer] for layer in scores.excluded],
                     marker="x", color="red", zorder=3, label="excluded by the fences")
        axis.legend(fontsize=8)
    if scores.golden_layer is None:
        axis.text(0.5, 0.5, "no layer: not applicable", transform=axis.transAxes, ha="center")
        return
    for other in axes:
        other.axvline(scores.golden_layer, linestyle="--", linewidth=1, color=colour)


def runtimes(results: StudyResults) -> bytes:
    """Wall time of each locator and of brute force (all layers) on each proxy set, log scale."""
    figure, axis = plt.subplots(figsize=(max(5, 1.8 * len(results.runtimes) + 2), 3.5))
    bars = [(method.upper(), [r.locator_seconds[method] for r in results.runtimes])
            for method in study_locators()]
    bars.append(("brute force (all layers)", [r.bf_all_layers_seconds for r in results.runtimes]))
    width, x = 0.81 / len(bars), np.arange(len(results.runtimes))
    for i, (label, seconds) in enumerate(bars):
        axis.bar(x + (i - (len(bars) - 1) / 2) * width, seconds, width, label=label)
    axis.set_xticks(x, [r.dataset for r in results.runtimes])
    axis.set_yscale("log")
    axis.set_ylabel("seconds")
    axis.legend(fontsize=8)
    axis.set_title("Layer search wall time on the proxy set", fontsize=10)
    return png(figure)
