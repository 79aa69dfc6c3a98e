"""Trial-edit search: which layer to edit, decided by a budget of trial edits on a shortlist.

LGA ranks the layers from gradients alone, and its pick moves with the proxy draw
(docs/findings.md). Trial edits measure what a user cares about, at a cost. The strategies here
spend a budget of trial edits on a shortlist that survives LGA being wrong (LGA's best layers plus
layers spread over the depth), in rounds of successive halving.

Everything here is pure: a strategy asks a ``trial`` function for the scores of (request, layer)
cells, so the same code runs live (``locate/staged.py``: cells edited on the model) and in a replay
over a stored grid (``study/replay.py``: cells read from the committed rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from goldenlayers.errors import GoldenLayersError

# What a trial edit is scored on: rewrite accuracy, and the per-edit Overall (the mean of the
# teacher-forced metrics the request has). Both higher is better.
TRIAL_METRICS = ("rewrite_accuracy", "overall")
STRATEGIES = ("lga", "copied", "middle", "brute-force", "sweep-halving", "lga-halving")
COPIED_LAYER = 5  # EasyEdit's `layers: [5]`, which users copy into files for new models

# (request index, layer) cells -> (cells, len(TRIAL_METRICS)) scores; a failed edit scores 0
Trial = Callable[[Sequence[tuple[int, int]]], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """How to choose a layer: ``name`` (one of STRATEGIES), the budget of trial edits, the
    shortlist size (halving strategies), the metric trials are ranked by, the copied layer."""

    name: str = "lga-halving"
    budget: int = 0
    shortlist: int = 6
    by: str = "overall"
    copied_layer: int = COPIED_LAYER

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise GoldenLayersError(f"unknown strategy {self.name!r}; the strategies are "
                                    f"{', '.join(STRATEGIES)}")
        if self.by not in TRIAL_METRICS:
            raise GoldenLayersError(f"--by must be one of {', '.join(TRIAL_METRICS)}, "
                                    f"not {self.by!r}")
        if self.budget < 0:
            raise GoldenLayersError(f"the budget must be 0 or more trial edits, not {self.budget}")
        if self.name.endswith("halving") and self.shortlist < 2:
            raise GoldenLayersError(f"a shortlist needs at least 2 layers, not {self.shortlist}")

    @property
    def uses_lga(self) -> bool:
        return self.name in ("lga", "lga-halving")

    @property
    def label(self) -> str:
        if self.name.endswith("halving"):
            return f"{self.name} m{self.shortlist} by {self.by} B{self.budget}"
        return f"brute-force by {self.by}" if self.name == "brute-force" else self.name


@dataclass(frozen=True)
class SearchResult:
    """The layer a strategy chose, the runner-up (the last layer it eliminated), the trial edits
    spent and every trial's scores: layer -> (requests tried, len(TRIAL_METRICS)), in the order
    the requests were tried (the same order at every layer, so two layers pair up row by row)."""

    layer: int
    runner_up: int | None
    edits: int
    trials: dict[int, np.ndarray] = field(default_factory=dict)
    shortlist: tuple[int, ...] = ()


def spread_layers(num_layers: int, count: int) -> list[int]:
    """``count`` layers spread evenly over the depth: the centres of ``count`` equal bins, so the
    first and last layers (where edits often do not take) are not spent on a coarse sweep."""
    count = min(count, num_layers)
    return sorted({min(num_layers - 1, int((i + 0.5) * num_layers / count))
                   for i in range(count)}) if count > 0 else []


def shortlist_layers(num_layers: int, size: int, lga_ranking: Sequence[int] = ()) -> list[int]:
    """LGA's best ceil(size / 2) layers, then layers spread over the depth, ``size`` in all (or
    every layer when the model has fewer); best LGA layers first, then the spread in depth order."""
    size = min(size, num_layers)
    chosen = list(dict.fromkeys(lga_ranking))[: math.ceil(size / 2) if lga_ranking else 0]
    fill = [*spread_layers(num_layers, size - len(chosen)), *lga_ranking,
            *sorted(range(num_layers), key=lambda layer: abs(layer - (num_layers - 1) / 2))]
    for layer in fill:
        if len(chosen) == size:
            break
        if layer not in chosen:
            chosen.append(layer)
    return chosen


def successive_halving(candidates: Sequence[int], num_requests: int, budget: int, trial: Trial,
                       by: str, order: Sequence[int]) -> SearchResult:
    """Successive halving over ``candidates`` (in prior order, which decides only a round that had
    no trial yet). ceil(log2 m) rounds share ``budget`` equally, unspent edits carrying over; each round edits
    every surviving layer on the next requests of ``order`` (the same at every layer), and the
    better half by mean of ``by`` over all their trials survives (equal means: the shallower
    layer). No request is edited twice at a
    layer, so a layer tried on every request is not tried again."""
    column = TRIAL_METRICS.index(by)
    survivors = list(dict.fromkeys(candidates))
    rounds = max(1, math.ceil(math.log2(len(survivors)))) if len(survivors) > 1 else 0
    trials: dict[int, list[np.ndarray]] = {layer: [] for layer in survivors}
    tried, remaining, edits, runner_up = 0, budget, 0, None
    for done in range(rounds):
        add = min(remaining // (rounds - done) // len(survivors), num_requests - tried)
        if add > 0:
            cells = [(order[j], layer) for layer in survivors for j in range(tried, tried + add)]
            scores = np.asarray(trial(cells), dtype=np.float64).reshape(len(survivors), add, -1)
            for layer, block in zip(survivors, scores):
                trials[layer].append(block)
            tried, remaining, edits = tried + add, remaining - len(cells), edits + len(cells)
        means = {layer: float(np.concatenate(trials[layer])[:, column].mean()) if tried else 0.0
                 for layer in survivors}
        # equal means: the shallower layer; no trial yet (too small a budget): the prior order
        ranked = sorted(survivors, key=lambda layer: (-means[layer], layer)) if tried else survivors
        keep = math.ceil(len(survivors) / 2) if done < rounds - 1 else 1
        survivors, runner_up = ranked[:keep], ranked[keep] if len(ranked) > keep else runner_up
    stacked = {layer: np.concatenate(parts) for layer, parts in trials.items() if parts}
    return SearchResult(survivors[0], runner_up, edits, stacked, tuple(candidates))


def brute_force_search(num_layers: int, num_requests: int, trial: Trial, by: str,
                       order: Sequence[int]) -> SearchResult:
    """Every layer on every request; the best mean of ``by`` (ties: the shallower layer)."""
    cells = [(order[j], layer) for layer in range(num_layers) for j in range(num_requests)]
    scores = np.asarray(trial(cells), dtype=np.float64).reshape(num_layers, num_requests, -1)
    means = scores[:, :, TRIAL_METRICS.index(by)].mean(axis=1)
    ranked = sorted(range(num_layers), key=lambda layer: -means[layer])
    return SearchResult(ranked[0], ranked[1] if num_layers > 1 else None, len(cells),
                        dict(enumerate(scores)), tuple(range(num_layers)))


def run_strategy(strategy: Strategy, num_layers: int, num_requests: int, trial: Trial,
                 order: Sequence[int], lga_ranking: Sequence[int] = ()) -> SearchResult:
    """The layer ``strategy`` chooses on a model of ``num_layers`` layers, given LGA's ranking of
    the layers (best first; only strategies that use LGA read it) and trials on ``num_requests``
    requests tried in ``order``."""
    if strategy.uses_lga and not lga_ranking:
        raise GoldenLayersError(f"strategy {strategy.name} needs LGA's ranking of the layers")
    if strategy.name == "lga":
        return SearchResult(lga_ranking[0], lga_ranking[1] if len(lga_ranking) > 1 else None, 0)
    if strategy.name == "copied":
        return SearchResult(min(strategy.copied_layer, num_layers - 1), None, 0)
    if strategy.name == "middle":
        return SearchResult(num_layers // 2, None, 0)
    if strategy.name == "brute-force" or strategy.budget >= num_layers * num_requests:
        # a budget that covers every layer on every request buys brute force itself
        return brute_force_search(num_layers, num_requests, trial, strategy.by, order)
    ranking = lga_ranking if strategy.name == "lga-halving" else ()
    candidates = shortlist_layers(num_layers, strategy.shortlist, ranking)
    return successive_halving(candidates, num_requests, strategy.budget, trial, strategy.by, order)
