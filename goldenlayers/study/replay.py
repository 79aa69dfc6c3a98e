"""Replay: run layer-choosing strategies over a stored brute-force grid, without the model.

A study folder holds every request edited at every layer (``<data set>.jsonl``) and LGA's gradient
products (``<data set>.locate.jsonl``). A replay draws many seeded search sets from those requests,
lets each strategy choose a layer from its search set alone (trial edits read from the grid, LGA
read from the products), and scores the choice on the requests left out: its regret is the best
layer's mean there minus the chosen layer's, the best layer re-picked on every draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from goldenlayers.engine import ResultsFolder, build_grids
from goldenlayers.errors import GoldenLayersError
from goldenlayers.locate.readings import (DEFAULT_READING, GradientProducts, LGAReading,
                                          products_for, read_similarity, similarity_matrix)
from goldenlayers.locate.search import TRIAL_METRICS, Strategy, run_strategy

PRODUCTS = "lga-products"  # the locate rows that hold LGA's gradient products
SPLITS = ("proxy", "test")  # the splits edited at every layer


@dataclass(frozen=True, eq=False)
class ReplayGrid:
    """One (model, data set) pair: every request's scores at every layer, and LGA's per-request
    similarity under one reading where the products were stored (else None; NaN rows for the
    requests LGA skipped)."""

    name: str  # "model x data set"
    case_ids: tuple[str, ...]
    scores: np.ndarray  # (R, L, len(TRIAL_METRICS)); a failed edit scores 0
    similarity: np.ndarray | None  # (R, L)
    reading: LGAReading = DEFAULT_READING

    @property
    def num_layers(self) -> int:
        return self.scores.shape[1]

    @property
    def num_requests(self) -> int:
        return self.scores.shape[0]


def load_replay_grid(run_dir: str | Path, dataset: str, editor: str = "r-rome",
                     reading: LGAReading = DEFAULT_READING) -> ReplayGrid:
    """The proxy and test requests of ``dataset`` in a study folder that were edited at every
    layer by ``editor``, with LGA's similarity where products were stored."""
    folder = ResultsFolder(run_dir)
    grids = build_grids(row for row in folder.cells() if row.key.dataset == dataset)
    parts = [grids[key] for split in SPLITS if (key := (dataset, split, editor)) in grids]
    if not parts:
        raise GoldenLayersError(f"{run_dir}: no {editor} cells of {dataset} edited at every layer")
    if any(part.layers != tuple(range(len(part.layers))) for part in parts):
        raise GoldenLayersError(f"{run_dir}: {dataset} was not edited at every layer from 0; a "
                                "replay needs the whole grid")
    case_ids = tuple(case for part in parts for case in part.case_ids)
    missing = [m for m in TRIAL_METRICS if any(m not in part.metrics for part in parts)]
    if missing:
        raise GoldenLayersError(f"{run_dir}: {dataset}'s cells have no {missing[0]} values")
    scores = np.concatenate([part.values[:, :, [part.metrics.index(m) for m in TRIAL_METRICS]]
                             for part in parts])
    scores = np.nan_to_num(scores, nan=0.0)  # a failed edit did not take
    model = next(iter(folder.cells())).key.model
    products = stored_products(folder, dataset, reading)
    similarity = _aligned(products, case_ids, reading) if products else None
    return ReplayGrid(f"{model} x {dataset}", case_ids, scores, similarity, reading)


def stored_products(folder: ResultsFolder, dataset: str,
                    reading: LGAReading) -> list[GradientProducts]:
    """The reading's products on each split of ``dataset`` that has them."""
    found = []
    for row in folder.locate_rows():
        if row.dataset == dataset and row.method == PRODUCTS and row.split in SPLITS:
            stored = [GradientProducts.from_dict(p) for p in row.result["products"]]
            found.append(products_for(stored, reading))
    return found


def _aligned(products: Sequence[GradientProducts], case_ids: Sequence[str],
             reading: LGAReading) -> np.ndarray | None:
    rows = {}
    for part in products:
        matrix = similarity_matrix(part, reading.similarity)
        rows.update(zip(part.request_ids, matrix))
    if not rows:
        return None
    # LGA skips a request whose old answer it cannot find (live too); its row stays NaN and the
    # replay reads LGA from the search set's other requests, as locate would.
    missing = np.full(next(iter(rows.values())).shape, np.nan)
    return np.stack([rows.get(case, missing) for case in case_ids])


@dataclass(frozen=True, eq=False)
class Outcome:
    """One strategy on one pair over the draws: per draw the layer, its regret per metric
    (TRIAL_METRICS order) and the trial edits spent."""

    pair: str
    strategy: Strategy
    layers: np.ndarray  # (D,)
    regret: np.ndarray  # (D, len(TRIAL_METRICS))
    edits: np.ndarray  # (D,)

    def mean(self, metric: str) -> float:
        return float(self.regret[:, TRIAL_METRICS.index(metric)].mean())

    def median(self, metric: str) -> float:
        return float(np.median(self.regret[:, TRIAL_METRICS.index(metric)]))

    def p95(self, metric: str) -> float:
        return float(np.quantile(self.regret[:, TRIAL_METRICS.index(metric)], 0.95))

    @property
    def mean_edits(self) -> float:
        return float(self.edits.mean())

    def layer_shares(self) -> dict[int, float]:
        """How often each layer was chosen, most often first."""
        layers, counts = np.unique(self.layers, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {int(layers[i]): float(counts[i] / len(self.layers)) for i in order}


def lga_ranking(grid: ReplayGrid, search: np.ndarray) -> list[int]:
    """LGA's ranking of the layers from the search set's requests that have products."""
    if grid.similarity is None:
        return []
    similarity = grid.similarity[search]
    similarity = similarity[np.isfinite(similarity).all(axis=1)]
    if len(similarity) == 0:
        raise GoldenLayersError(f"{grid.name}: no request of a search set has LGA's products")
    return read_similarity(similarity, grid.reading).ranking


def search_draws(num_requests: int, search_size: int, count: int, seed: int = 0) -> np.ndarray:
    """(count, num_requests) seeded permutations: the first ``search_size`` of each row are the
    search set (in the order trials take them), the rest the requests that score the choice."""
    if not 0 < search_size < num_requests:
        raise GoldenLayersError(f"a search set of {search_size} leaves no request of "
                                f"{num_requests} to score the choice on")
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(num_requests) for _ in range(count)])


def replay(grid: ReplayGrid, strategies: Sequence[Strategy], draws: int = 1000,
           search_size: int = 20, seed: int = 0) -> list[Outcome]:
    """Every strategy on the same ``draws`` search sets of ``search_size`` requests."""
    if any(s.uses_lga for s in strategies) and grid.similarity is None:
        raise GoldenLayersError(f"{grid.name}: LGA's products are not stored; replay without "
                                "the LGA strategies")
    permutations = search_draws(grid.num_requests, search_size, draws, seed)
    picks = np.zeros((len(strategies), draws), dtype=int)
    edits = np.zeros((len(strategies), draws), dtype=int)
    regret = np.zeros((len(strategies), draws, len(TRIAL_METRICS)))
    order = range(search_size)
    for d, permutation in enumerate(permutations):
        search, held = permutation[:search_size], permutation[search_size:]
        scores = grid.scores[search]
        trial = lambda cells, scores=scores: np.array([scores[r, l] for r, l in cells])  # noqa: E731
        ranking = lga_ranking(grid, search)
        means = grid.scores[held].mean(axis=0)  # (L, M) on the requests left out
        best = means.max(axis=0)
        for s, strategy in enumerate(strategies):
            result = run_strategy(strategy, grid.num_layers, search_size, trial, order, ranking)
            picks[s, d], edits[s, d] = result.layer, result.edits
            regret[s, d] = best - means[result.layer]
    return [Outcome(grid.name, strategy, picks[s], regret[s], edits[s])
            for s, strategy in enumerate(strategies)]


def halving_strategies(num_layers: int, budgets_per_layer: Sequence[float],
                       shortlists: Sequence[int] = (4, 6, 8, 10),
                       by: Sequence[str] = TRIAL_METRICS) -> list[Strategy]:
    """Both halving strategies at every shortlist size, ranking metric and budget (a multiple of
    the number of layers, as a budget scales with the layers to search)."""
    return [Strategy(name, int(round(k * num_layers)), m, metric)
            for name in ("lga-halving", "sweep-halving") for m in shortlists for metric in by
            for k in budgets_per_layer]


def baseline_strategies() -> list[Strategy]:
    """The strategies with no budget to choose, and brute force on the search set."""
    return [Strategy("lga"), Strategy("copied"), Strategy("middle"),
            *(Strategy("brute-force", by=metric) for metric in TRIAL_METRICS)]
