"""Brute-force matrices from the store: A[request, layer, metric] of one data set's split, and the
golden-layer choice on them.

The Overall of a layer is computed over the layers of the grid (min-max by default: see
``goldenlayers.evaluate.overall``). Ties go to the shallower layer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import LOWER_IS_BETTER, METRICS, overall_score
from goldenlayers.study.units import EditRecord

OVERALL = "overall"
PRIMARY = "rewrite_accuracy"  # the metric of Table 1, the heatmap, regret and rank correlation


@dataclass(frozen=True)
class Grid:
    """A[request, layer, metric] of one data set's split; NaN where a request lacks the metric's data.

    Only layers at which every request of the split was edited are kept.
    """

    dataset: str
    split: str
    case_ids: tuple[str, ...]
    layers: tuple[int, ...]  # ascending
    metrics: tuple[str, ...]  # those with a value for at least one request
    values: np.ndarray  # (R, L, M)
    seconds: float  # wall time of all the edits and evaluations behind the grid

    def metric(self, name: str) -> np.ndarray:
        """(R, L) for a metric; rows without the metric's data are dropped."""
        matrix = self.values[:, :, self.metrics.index(name)]
        return matrix[~np.isnan(matrix).any(axis=1)]

    def layer_means(self, name: str) -> np.ndarray:
        """(L,) mean over requests of a metric, or the per-layer Overall for ``OVERALL``."""
        if name == OVERALL:
            return np.asarray(self.overall().scores)
        return self.metric(name).mean(axis=0)

    def overall(self) -> "OverallOfLayers":
        rows = [{m: float(self.metric(m)[:, j].mean()) for m in self.metrics}
                for j in range(len(self.layers))]
        scores = overall_score(rows, metrics=self.metrics)
        return OverallOfLayers(tuple(scores), scores.describe())

    def column(self, layer: int) -> int:
        if layer not in self.layers:
            raise GoldenLayersError(f"layer {layer} was not brute-forced on {self.dataset} {self.split}")
        return self.layers.index(layer)

    def score_at(self, name: str, layer: int) -> float:
        return float(self.layer_means(name)[self.column(layer)])

    def golden_layer(self, name: str) -> int:
        return self.layers[best_index(self.layer_means(name), name)]

    def optimal_layers(self, name: str, tolerance: float = 1e-9) -> tuple[int, ...]:
        """Every layer whose mean ties the best one (the heatmap's stars)."""
        means = signed(self.layer_means(name), name)
        return tuple(layer for layer, value in zip(self.layers, means) if value >= means.max() - tolerance)


@dataclass(frozen=True)
class OverallOfLayers:
    scores: tuple[float, ...]  # one per grid layer
    description: str


def signed(values: np.ndarray, metric: str) -> np.ndarray:
    """Values oriented so that higher is better."""
    return -values if metric in LOWER_IS_BETTER else values


def best_index(values: np.ndarray, metric: str) -> int:
    """Index of the best value (argmax; argmin for lower-is-better metrics); ties: the first."""
    return int(np.argmax(signed(np.asarray(values), metric)))


def build_grids(records: Iterable[EditRecord]) -> dict[tuple[str, str], Grid]:
    """(dataset, split) -> Grid from the edit records of a study."""
    by_split: dict[tuple[str, str], list[EditRecord]] = defaultdict(list)
    for record in records:
        by_split[(record.unit.dataset, record.unit.split)].append(record)
    return {key: _grid(*key, group) for key, group in sorted(by_split.items())}


def _grid(dataset: str, split: str, records: Sequence[EditRecord]) -> Grid:
    case_ids = tuple(sorted({r.unit.case_id for r in records}))
    present = defaultdict(set)
    for record in records:
        present[record.unit.layer].add(record.unit.case_id)
    layers = tuple(sorted(layer for layer, ids in present.items() if len(ids) == len(case_ids)))
    metrics = tuple(m for m in METRICS if any(m in r.metrics for r in records))
    values = np.full((len(case_ids), len(layers), len(metrics)), np.nan)
    row, column = {c: i for i, c in enumerate(case_ids)}, {layer: j for j, layer in enumerate(layers)}
    for record in records:
        j = column.get(record.unit.layer)
        if j is None:
            continue
        for k, metric in enumerate(metrics):
            values[row[record.unit.case_id], j, k] = record.metrics.get(metric, np.nan)
    if not layers:
        raise GoldenLayersError(f"no layer of {dataset} {split} has all its requests edited")
    seconds = float(sum(r.seconds for r in records if r.unit.layer in column))
    return Grid(dataset, split, case_ids, layers, metrics, values, seconds)


def union_grid(grids: Sequence[Grid], layers: Sequence[int]) -> Grid:
    """The rows of several grids over the given common layers (the paper's proxy union)."""
    metrics = tuple(m for m in METRICS if all(m in g.metrics for g in grids))
    parts = [g.values[:, [g.column(layer) for layer in layers]][:, :, [g.metrics.index(m) for m in metrics]]
             for g in grids]
    case_ids = tuple(f"{g.dataset}/{c}" for g in grids for c in g.case_ids)
    return Grid("+".join(g.dataset for g in grids), "proxy-union", case_ids, tuple(layers), metrics,
                np.concatenate(parts, axis=0), sum(g.seconds for g in grids))
