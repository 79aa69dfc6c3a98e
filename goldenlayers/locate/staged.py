"""The staged locate: trial edits decide within a budget, on a shortlist that survives a wrong prior.

LGA alone picks from gradients, and its pick moves with the proxy draw; on Gemma 3 it can land on a
layer where no edit takes (docs/findings.md). Here a shortlist of layers (spread over the depth by
default; LGA's best layers plus a spread with ``strategy="lga-halving"``) is tried with trial edits
of the proxy requests (each one edited alone at one layer, scored and restored: the engine's cells,
the same rows a study would write), which decide in rounds of successive halving
(``locate/search.py``). The default strategy, shortlist and budget are the ones the replay rule
chose (docs/findings.md, "Staged locate").
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from goldenlayers.editing import get_editor
from goldenlayers.engine import CellKey, CellRow, CellRunner, check_executor, run_cells
from goldenlayers.evaluate import bootstrap_interval, paired_comparison
from goldenlayers.locate.base import (LayerScores, LayerStability, LocateError, Locator,
                                      check_positive, get_locator, register)
from goldenlayers.locate.measure import measure
from goldenlayers.locate.search import (STRATEGIES, TRIAL_METRICS, SearchResult, Strategy,
                                        run_strategy)
from goldenlayers.models.handle import ModelHandle

log = logging.getLogger(__name__)

# Chosen by the replay rule written before the replay was run (docs/findings.md, "Staged locate";
# the replay: docs/findings/replay.md): a sweep of 6 layers spread over the depth, halved by trial
# rewrite accuracy, within 2 trial edits per layer of the model (the layers to search grow with
# depth). LGA's shortlist (strategy lga-halving) did no better in the replay; it stays selectable.
DEFAULT_STRATEGY = "sweep-halving"
DEFAULT_SHORTLIST = 6
DEFAULT_BY = "rewrite_accuracy"
DEFAULT_BUDGET_PER_LAYER = 2
STABILITY_RESAMPLES = 1000


@dataclass
class StagedSettings:
    strategy: str = DEFAULT_STRATEGY
    budget: int | None = None  # trial edits; None: DEFAULT_BUDGET_PER_LAYER x layers; 0: no trial
    shortlist: int = DEFAULT_SHORTLIST
    by: str = DEFAULT_BY  # the metric trials are ranked by (rewrite_accuracy or overall)
    editor: str = "r-rome"
    editor_overrides: dict[str, Any] = field(default_factory=dict)
    lga: dict[str, Any] = field(default_factory=dict)  # LGA's settings (its reading, stability)
    dataset: str = "requests"  # names the trial cells (CellKey.dataset)
    seed: int = 0  # the order requests are tried in, and every cell's seed
    # requests whose values are optimised together: a round's new requests at a layer in one
    # batch keep a second thread busier (on 2 cores the main command's locate took 282-305 s
    # with 8 against 313-335 s with 4, 3 runs each, the same pick and trial means:
    # benchmarks/staged_batches.py); on a GPU with a large model, lower it if memory runs out
    batch_requests: int = 8
    executor: str = "local"  # or "ray": trial cells on Ray workers (engine.run_cells)
    workers: int | None = None  # Ray workers; None: one per core (or GPU)
    top_k: int = 5

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise LocateError(f"unknown strategy {self.strategy!r}; the strategies are "
                              f"{', '.join(STRATEGIES)}")
        if self.budget is not None:
            check_positive("budget", self.budget, allow_zero=True)
        check_positive("batch_requests", self.batch_requests)
        check_executor(self.executor)
        self.strategy_for(2)  # validates shortlist and by

    def budget_for(self, num_layers: int) -> int:
        return DEFAULT_BUDGET_PER_LAYER * num_layers if self.budget is None else self.budget

    def strategy_for(self, num_layers: int) -> Strategy:
        budget = self.budget_for(num_layers)
        # a budget of 0 leaves LGA alone: no trial can be made
        name = "lga" if budget == 0 and self.strategy.endswith("halving") else self.strategy
        return Strategy(name, budget, self.shortlist, self.by)


@dataclass(frozen=True)
class LayerTrial:
    """One shortlisted layer's trial edits: how many, and each metric's mean with its bootstrap
    95% interval over the requests tried (TRIAL_METRICS order)."""

    layer: int
    edits: int
    means: tuple[float, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]


@dataclass(frozen=True)
class TrialSummary:
    """What the trial edits found: the pick and the runner-up, the trials at each layer tried,
    whether the trials separate the two (a paired t-test on the requests both were tried on, with
    the smallest difference it could detect), and the edits spent against the budget."""

    strategy: str
    by: str
    budget: int
    edits: int
    layer: int
    runner_up: int | None
    shortlist: list[int]
    layers: list[LayerTrial]
    separation_p_value: float | None = None  # None: not testable (too few paired trials)
    separation_difference: float | None = None  # pick minus runner-up, on ``by``
    separation_detectable: float | None = None
    paired_requests: int = 0

    @property
    def separated(self) -> bool:
        return self.separation_p_value is not None and self.separation_p_value < 0.05

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSummary:
        layers = [LayerTrial(d["layer"], d["edits"], tuple(d["means"]), tuple(d["lows"]),
                             tuple(d["highs"])) for d in data["layers"]]
        return cls(**{**data, "layers": layers})


@register
class StagedLocator(Locator):
    """Trial edits of the proxy requests on a shortlist (layers spread over the depth, or LGA's
    best layers and a spread), in rounds of successive halving within a budget."""

    name = "staged"
    settings_class = StagedSettings
    score_label = "trial mean"

    @classmethod
    def shared_settings(cls, shared):
        """Also hands LGA the seed of its stability line, as ``locate --method lga`` would."""
        settings = super().shared_settings(shared)
        if "seed" in shared:
            settings["lga"] = {"stability_seed": shared["seed"], **settings.get("lga", {})}
        return settings

    def locate(self, handle: ModelHandle, requests) -> LayerScores:
        s: StagedSettings = self.settings
        if not requests:
            raise LocateError("the staged locate needs at least one proxy request")
        strategy = s.strategy_for(handle.num_layers)
        with measure(handle.device) as cost:
            lga = get_locator("lga", **s.lga).locate(handle, requests) if strategy.uses_lga else None
            ranking = lga.ranking() if lga is not None else []
            order = list(range(len(requests)))
            random.Random(f"staged:{s.seed}").shuffle(order)
            trial = CellTrial(handle, s, list(requests))
            result = run_strategy(strategy, handle.num_layers, len(requests), trial, order, ranking)
        summary = summarise_trials(strategy, result, trial.rows_by_layer(order))
        return self.scores_from(handle, lga, summary, trial, cost)

    def scores_from(self, handle: ModelHandle, lga: LayerScores | None, summary: TrialSummary,
                    trial: CellTrial, cost) -> LayerScores:
        """Per layer: the trial mean of ``by`` where trials were made (NaN elsewhere); the pick is
        the search's, then the other layers tried by their means, then LGA's order for the rest;
        the stability line resamples the requests the last round's layers were all tried on."""
        if lga is not None and not summary.layers:  # a budget of 0: LGA alone, its scores
            return dataclasses.replace(lga, method=self.name, settings=self.settings_dict(),
                                       trials=summary, notes=[f"0 trial edits ({summary.strategy})",
                                                              *lga.notes])
        column = TRIAL_METRICS.index(summary.by)
        scores = [float("nan")] * handle.num_layers
        for tried in summary.layers:
            scores[tried.layer] = tried.means[column]
        tried_order = sorted(summary.layers, key=lambda t: (-t.means[column], t.layer))
        ranked = list(dict.fromkeys([summary.layer, *(t.layer for t in tried_order),
                                     *(lga.ranking() if lga else [])]))
        notes = [f"{summary.edits} trial edits of {summary.budget} budgeted "
                 f"({summary.strategy}, by {summary.by})", *(lga.notes if lga else [])]
        found = self.result(handle, cost, scores,
                            trial.per_request_matrix(handle.num_layers, summary.by),
                            trial.request_ids, notes=notes, reading=lga.reading if lga else None,
                            trials=summary,
                            stability=trial_stability(trial.final_round(summary), self.settings.seed)
                            or (lga.stability if lga else None))
        return dataclasses.replace(found, golden_layer=summary.layer,
                                   top_k=ranked[:self.settings.top_k])


class CellTrial:
    """Trial edits on the model: each (request index, layer) is one engine cell (edit alone,
    score, restore bit for bit); a cell is run once and remembered."""

    def __init__(self, handle: ModelHandle, settings: StagedSettings, requests: list):
        self.handle, self.settings, self.requests = handle, settings, requests
        self.runner = CellRunner(handle, get_editor(settings.editor, **settings.editor_overrides))
        self.rows: dict[tuple[int, int], CellRow] = {}
        self.request_ids = [str(r.case_id) for r in requests]

    def __call__(self, cells: Sequence[tuple[int, int]]) -> np.ndarray:
        todo = [cell for cell in dict.fromkeys(cells) if cell not in self.rows]
        if todo:
            self.runner.pre_edit(self.requests)  # the unedited model, once
            self._run(todo)
        return np.array([[self.rows[cell].metrics.get(m, 0.0) for m in TRIAL_METRICS]
                         for cell in cells])  # a failed edit has no metrics: it did not take

    def _run(self, todo: list[tuple[int, int]]) -> None:
        s = self.settings
        cells = [(CellKey(self.handle.name, s.dataset, "proxy", s.editor, layer,
                          self.request_ids[index], s.seed), self.requests[index])
                 for index, layer in todo]
        rows = run_cells(cells, self.runner, executor=s.executor, workers=s.workers,
                         requests_per_batch=s.batch_requests, label="trial edits (request x layer)")
        self.rows.update(zip(todo, rows))

    def rows_by_layer(self, order: Sequence[int]) -> dict[int, list[CellRow]]:
        """Each tried layer's rows, in the order the requests were tried."""
        position = {index: p for p, index in enumerate(order)}
        found: dict[int, list[tuple[int, CellRow]]] = {}
        for (index, layer), row in self.rows.items():
            found.setdefault(layer, []).append((position[index], row))
        return {layer: [row for _, row in sorted(rows, key=lambda item: item[0])]
                for layer, rows in found.items()}

    def final_round(self, summary: TrialSummary) -> tuple[list[int], np.ndarray]:
        """The layers tried most (the search's last round) and their (requests, layers) values of
        ``summary.by`` on the requests they were all tried on."""
        most = max((t.edits for t in summary.layers), default=0)
        layers = [t.layer for t in summary.layers if t.edits == most]
        shared = [index for index in range(len(self.requests))
                  if all((index, layer) in self.rows for layer in layers)]
        values = np.array([[self.rows[(index, layer)].metrics.get(summary.by, 0.0)
                            for layer in layers] for index in shared], dtype=np.float64)
        return layers, values.reshape(len(shared), len(layers))

    def per_request_matrix(self, num_layers: int, metric: str) -> list[list[float]]:
        matrix = [[float("nan")] * num_layers for _ in self.requests]
        for (index, layer), row in self.rows.items():
            matrix[index][layer] = float(row.metrics.get(metric, 0.0))
        return matrix


def summarise_trials(strategy: Strategy, result: SearchResult,
                     rows: dict[int, list[CellRow]]) -> TrialSummary:
    """Means with intervals per tried layer, and the pick against the runner-up."""
    layers = []
    for layer in sorted(rows):
        values = np.array([[row.metrics.get(m, 0.0) for m in TRIAL_METRICS] for row in rows[layer]])
        intervals = [bootstrap_interval(values[:, k]) for k in range(len(TRIAL_METRICS))]
        layers.append(LayerTrial(layer, len(values), tuple(i.mean for i in intervals),
                                 tuple(i.low for i in intervals), tuple(i.high for i in intervals)))
    summary = TrialSummary(strategy.name, strategy.by, strategy.budget, result.edits, result.layer,
                           result.runner_up, list(result.shortlist), layers)
    return with_separation(summary, rows)


def with_separation(summary: TrialSummary, rows: dict[int, list[CellRow]]) -> TrialSummary:
    """The paired test of pick vs runner-up on the requests both were tried on (same order)."""
    if summary.runner_up is None or summary.runner_up not in rows or summary.layer not in rows:
        return summary
    paired = min(len(rows[summary.layer]), len(rows[summary.runner_up]))
    if paired < 2:
        return summary
    pick = [row.metrics.get(summary.by, 0.0) for row in rows[summary.layer][:paired]]
    other = [row.metrics.get(summary.by, 0.0) for row in rows[summary.runner_up][:paired]]
    differences = np.subtract(pick, other)
    if np.ptp(differences) == 0.0:  # every request differs alike: no spread for a t-test
        return TrialSummary(**{**summary.__dict__, "paired_requests": paired,
                               "separation_p_value": 1.0 if differences[0] == 0.0 else 0.0,
                               "separation_difference": float(differences[0])})
    comparison = paired_comparison(pick, other)
    return TrialSummary(**{**summary.__dict__, "separation_p_value": comparison.test.p_value,
                           "separation_difference": comparison.difference.mean,
                           "separation_detectable": comparison.detectable,
                           "paired_requests": paired})


def trial_stability(final: tuple[list[int], np.ndarray], seed: int,
                    resamples: int = STABILITY_RESAMPLES) -> LayerStability | None:
    """How often each of the last round's layers wins (the highest mean) when the requests they
    were all tried on are resampled with replacement; a resample in which layers tie is shared
    among them, so layers that never differ show equal shares. None with fewer than two layers
    or two requests."""
    layers, values = final
    if len(layers) < 2 or len(values) < 2:
        return None
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)  # (resamples, layers)
    best = np.isclose(means, means.max(axis=1, keepdims=True), rtol=0.0, atol=1e-12)
    wins = (best / best.sum(axis=1, keepdims=True)).sum(axis=0) / resamples
    ranked = sorted(zip(layers, wins.tolist()), key=lambda item: (-item[1], item[0]))
    return LayerStability(resamples, seed, {int(layer): share for layer, share in ranked
                                           if share > 0}, len(values))
