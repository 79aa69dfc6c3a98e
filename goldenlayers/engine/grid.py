"""A grid of cells, A[request, layer, metric], and the golden layer it names.

Brute force in ``locate`` and every table of a study read their layers from a ``Grid`` built from
``CellRow``s. Each metric's direction comes from ``goldenlayers.evaluate.HIGHER_IS_BETTER`` and the
pick from ``engine.ranking`` (the one ranking rule: ties go to the shallower layer).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from goldenlayers.engine.cell import CELL_METRICS, CellRow
from goldenlayers.engine.ranking import best_layer, oriented, signed
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import (Interval, PairedComparison, bootstrap_interval, higher_is_better,
                                   paired_comparison, regret_interval)


def pick_index(values: Sequence[float] | np.ndarray, metric: str) -> int:
    """Index of the best value by the metric's direction; ties: the first (shallower) one."""
    return best_layer(values, (), higher_is_better(metric))


@dataclass(frozen=True)
class Grid:
    """A[request, layer, metric] of one (data set, split, editor); NaN where a request lacks the
    metric's data or its edit failed (``failures`` counts those per layer).

    Only requests edited at every layer of the grid are kept, so every layer mean is over the same
    requests (apart from failed edits).
    """

    dataset: str
    split: str
    editor: str
    case_ids: tuple[str, ...]
    layers: tuple[int, ...]  # ascending
    metrics: tuple[str, ...]  # those with a value for at least one request
    values: np.ndarray  # (R, L, M)
    seconds: float  # wall time of all the cells behind the grid
    failures: tuple[int, ...] = ()  # failed edits per layer

    def metric(self, name: str, complete: bool = False) -> np.ndarray:
        """(R, L) of a metric over the requests that have its data; ``complete``: only requests
        with a value at every layer (no failed edit), as paired comparisons need."""
        if name not in self.metrics:
            raise GoldenLayersError(f"{self.dataset} {self.split} has no {name!r} values")
        matrix = self.values[:, :, self.metrics.index(name)]
        missing = np.isnan(matrix)
        return matrix[~missing.any(axis=1)] if complete else matrix[~missing.all(axis=1)]

    def layer_means(self, name: str) -> np.ndarray:
        """(L,) mean over requests (NaN where every edit at that layer failed)."""
        matrix = self.metric(name)
        counts = (~np.isnan(matrix)).sum(axis=0)
        sums = np.nansum(matrix, axis=0)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def column(self, layer: int) -> int:
        if layer not in self.layers:
            raise GoldenLayersError(f"layer {layer} was not brute-forced on {self.dataset} {self.split}")
        return self.layers.index(layer)

    def score_at(self, name: str, layer: int) -> float:
        return float(self.layer_means(name)[self.column(layer)])

    def golden_layer(self, name: str) -> int:
        """The layer with the best mean of ``name`` (the picker)."""
        return self.layers[pick_index(self.layer_means(name), name)]

    def optimal_layers(self, name: str, tolerance: float = 1e-9) -> tuple[int, ...]:
        """Every layer whose mean ties the best one."""
        means = oriented(self.layer_means(name), higher_is_better(name))
        return tuple(layer for layer, value in zip(self.layers, means) if value >= means.max() - tolerance)

    def sample_optimal(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per request (with every edit made): its best layer and its score there."""
        matrix = self.metric(name, complete=True)
        best = np.argmax(oriented(matrix, higher_is_better(name)), axis=1)  # ties: shallower
        return np.asarray(self.layers)[best], matrix[np.arange(len(matrix)), best]

    def interval(self, name: str, layer: int, seed: int = 0) -> Interval:
        """Bootstrap 95% interval (over requests) of the mean of ``name`` at ``layer``."""
        return bootstrap_interval(self.metric(name)[:, self.column(layer)], seed=seed)

    def regret(self, name: str, layer: int, reference: int | None = None,
               seed: int = 0) -> Interval:
        """How much worse ``layer`` is than ``reference``, oriented so that positive = worse.

        Without ``reference``: against the best layer, re-picked in every bootstrap resample of the
        requests with every edit made (``regret_to_best``). With one: the paired difference of two
        named layers, a bootstrap interval over the requests both have."""
        if reference is None:
            return self.regret_to_best(name, layer, seed=seed)
        matrix = self.metric(name)
        differences = signed(matrix[:, self.column(reference)] - matrix[:, self.column(layer)],
                             higher_is_better(name))
        return bootstrap_interval(differences[~np.isnan(differences)], seed=seed)

    def regret_to_best(self, name: str, layer: int, seed: int = 0) -> Interval:
        """The best layer's mean of ``name`` minus ``layer``'s (positive = worse), with a bootstrap
        interval that re-picks the best layer in each resample: holding the test-best layer fixed
        would read its selection luck as a measured zero ("0.000 [0.000, 0.000]")."""
        matrix = signed(self.metric(name, complete=True), higher_is_better(name))
        return regret_interval(matrix, self.column(layer), seed=seed)

    def compare(self, name: str, layer: int, reference: int, seed: int = 0) -> PairedComparison:
        """Paired t-test of ``reference``'s scores minus ``layer``'s over the requests with every
        edit made, oriented so that positive = ``layer`` is worse (two selectors' layers)."""
        matrix = signed(self.metric(name, complete=True), higher_is_better(name))  # every edit made
        return paired_comparison(matrix[:, self.column(reference)], matrix[:, self.column(layer)],
                                 seed=seed)

    def golden_vs_samplewise(self, name: str, seed: int = 0) -> PairedComparison:
        """Each request's best score vs its score at the golden layer (paper Table 1)."""
        matrix = self.metric(name, complete=True)
        _, best = self.sample_optimal(name)
        return paired_comparison(best, matrix[:, self.column(self.golden_layer(name))], seed=seed)


def build_grids(rows: Iterable[CellRow]) -> dict[tuple[str, str, str], Grid]:
    """(data set, split, editor) -> Grid from cell rows (any order, any mix)."""
    groups: dict[tuple[str, str, str], list[CellRow]] = defaultdict(list)
    for row in rows:
        groups[(row.key.dataset, row.key.split, row.key.editor)].append(row)
    return {key: grid_of(*key, group) for key, group in sorted(groups.items())}


def grid_of(dataset: str, split: str, editor: str, rows: Sequence[CellRow]) -> Grid:
    layers = tuple(sorted({r.key.layer for r in rows}))
    done: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        done[row.key.case_id].add(row.key.layer)
    # a request still in flight (not yet at every layer) waits for the next read
    case_ids = tuple(sorted(c for c, seen in done.items() if len(seen) == len(layers)))
    if not case_ids:
        raise GoldenLayersError(f"no request of {dataset} {split} ({editor}) has been edited at "
                                f"every layer ({', '.join(map(str, layers))}) yet")
    metrics = tuple(m for m in CELL_METRICS if any(m in r.metrics for r in rows))
    values = np.full((len(case_ids), len(layers), len(metrics)), np.nan)
    row_of = {c: i for i, c in enumerate(case_ids)}
    column_of = {layer: j for j, layer in enumerate(layers)}
    for row in rows:
        i, j = row_of.get(row.key.case_id), column_of[row.key.layer]
        if i is None:
            continue
        for k, metric in enumerate(metrics):
            values[i, j, k] = row.metrics.get(metric, np.nan)
    kept = [r for r in rows if r.key.case_id in row_of]
    seconds = float(sum(r.seconds for r in kept))
    failures = tuple(sum(1 for r in kept if r.error is not None and r.key.layer == layer)
                     for layer in layers)
    return Grid(dataset, split, editor, case_ids, layers, metrics, values, seconds, failures)


def union_grid(grids: Sequence[Grid], layers: Sequence[int]) -> Grid:
    """The rows of several grids over common layers (the paper's proxy union)."""
    metrics = tuple(m for m in CELL_METRICS if all(m in g.metrics for g in grids))
    parts = [g.values[:, [g.column(layer) for layer in layers]][:, :, [g.metrics.index(m) for m in metrics]]
             for g in grids]
    case_ids = tuple(f"{g.dataset}/{c}" for g in grids for c in g.case_ids)
    failures = tuple(sum(g.failures[g.column(layer)] for g in grids) for layer in layers)
    return Grid("+".join(g.dataset for g in grids), "proxy-union", grids[0].editor, case_ids,
                tuple(layers), metrics, np.concatenate(parts, axis=0), sum(g.seconds for g in grids),
                failures)
