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
    """A[request, layer, metric] of one data set's split; NaN where a request lacks the metric's data
    or where its edit failed (an ``EditError``: ``failures`` counts them per layer).

    Only layers at which every request of the split was edited are kept. Layer means are over the
    edits that were made.
    """

    dataset: str
    split: str
    case_ids: tuple[str, ...]
    layers: tuple[int, ...]  # ascending
    metrics: tuple[str, ...]  # those with a value for at least one request
    values: np.ndarray  # (R, L, M)
    seconds: float  # wall time of all the edits and evaluations behind the grid
    failures: tuple[int, ...] = ()  # failed edits per layer

    def metric(self, name: str, complete: bool = False) -> np.ndarray:
        """(R, L) for a metric: the requests with its data; ``complete``: only those with a value at
        every layer (no failed edit), as the paired comparisons need."""
        matrix = self.values[:, :, self.metrics.index(name)]
        missing = np.isnan(matrix)
        return matrix[~missing.any(axis=1)] if complete else matrix[~missing.all(axis=1)]

    def layer_means(self, name: str) -> np.ndarray:
        """(L,) mean over requests of a metric (NaN where every edit failed), or the per-layer
        Overall for ``OVERALL``."""
        if name == OVERALL:
            return np.asarray(self.overall().scores)
        matrix = self.metric(name)
        counts = (~np.isnan(matrix)).sum(axis=0)
        sums = np.nansum(matrix, axis=0)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def overall(self) -> "OverallOfLayers":
        """Overall of each layer, normalised over the layers with every metric's mean (else NaN)."""
        means = np.stack([self.layer_means(m) for m in self.metrics], axis=1)  # (L, M)
        usable = np.flatnonzero(~np.isnan(means).any(axis=1))
        scores = overall_score([dict(zip(self.metrics, map(float, means[j]))) for j in usable],
                               metrics=self.metrics)
        values = np.full(len(self.layers), np.nan)
        values[usable] = scores
        return OverallOfLayers(tuple(values.tolist()), scores.describe())

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
    """Values oriented so that higher is better; NaN (no edit made) as the worst."""
    oriented = -np.asarray(values) if metric in LOWER_IS_BETTER else np.asarray(values)
    return np.nan_to_num(oriented, nan=-np.inf)


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
    failures = tuple(sum(1 for r in records if r.error is not None and r.unit.layer == layer)
                     for layer in layers)
    return Grid(dataset, split, case_ids, layers, metrics, values, seconds, failures)


def union_grid(grids: Sequence[Grid], layers: Sequence[int]) -> Grid:
    """The rows of several grids over the given common layers (the paper's proxy union)."""
    metrics = tuple(m for m in METRICS if all(m in g.metrics for g in grids))
    parts = [g.values[:, [g.column(layer) for layer in layers]][:, :, [g.metrics.index(m) for m in metrics]]
             for g in grids]
    case_ids = tuple(f"{g.dataset}/{c}" for g in grids for c in g.case_ids)
    failures = tuple(sum(g.failures[g.column(layer)] for g in grids) for layer in layers)
    return Grid("+".join(g.dataset for g in grids), "proxy-union", case_ids, tuple(layers), metrics,
                np.concatenate(parts, axis=0), sum(g.seconds for g in grids), failures)
