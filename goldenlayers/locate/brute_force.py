"""Brute force (paper §4): edit each request alone at each layer, score it, restore exactly.

The cells are the engine's (``goldenlayers.engine``), the same ones a study runs, and the layers are
ranked by ``engine.ranking`` as the engine's grids are, so ``locate --method brute-force`` and ``study`` name the same
layer on the same grid. Exact and slow: requests x layers edits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from goldenlayers.editing import fluency_procedure, get_editor
from goldenlayers.engine import CellKey, CellRunner, Grid, grid_of, run_cells
from goldenlayers.engine.layers import parse_layers
from goldenlayers.evaluate import METRICS, OVERALL, TEACHER_FORCED, higher_is_better, supports
from goldenlayers.locate.base import LayerScores, LocateError, Locator, check_positive, register
from goldenlayers.locate.measure import measure
from goldenlayers.models.handle import ModelHandle

log = logging.getLogger(__name__)


@dataclass
class BruteForceSettings:
    editor: str = "r-rome"
    editor_overrides: dict[str, Any] = field(default_factory=dict)  # get_editor keywords
    metric: str = "rewrite_accuracy"  # the golden layer is the best layer by this metric's mean
    layers: str = "all"  # every layer by default (see engine.layers)
    top_k: int = 5
    dataset: str = "requests"  # names the rows (CellKey.dataset)
    seed: int = 0
    batch_requests: int = 4  # requests whose values are optimised together (same results)

    def __post_init__(self) -> None:
        if self.metric not in (*METRICS, OVERALL):
            raise LocateError(f"unknown metric {self.metric!r}; the metrics are "
                              f"{', '.join((*METRICS, OVERALL))}")
        parse_layers(self.layers, None)
        check_positive("top_k", self.top_k)
        check_positive("batch_requests", self.batch_requests)


@register
class BruteForceLocator(Locator):
    name = "brute-force"
    settings_class = BruteForceSettings
    scores_are_means = True
    score_label = "brute-force mean"

    def locate(self, handle: ModelHandle, requests) -> LayerScores:
        """The golden layer by ``settings.metric``; ``search`` gives the whole grid."""
        with measure(handle.device) as cost:
            grid = self.search(handle, requests)
        return self.grid_scores(handle, grid, cost)

    def grid_scores(self, handle: ModelHandle, grid: Grid, cost) -> LayerScores:
        """The locator view of a grid: every model layer's mean of ``settings.metric`` (NaN where
        not brute-forced), ranked by the metric's declared direction, as the engine's grids are."""
        metric = self.settings.metric
        scores = [float("nan")] * handle.num_layers
        for layer, value in zip(grid.layers, grid.layer_means(metric)):
            scores[layer] = float(value)
        skipped = [layer for layer in range(handle.num_layers) if layer not in grid.layers]
        notes = [f"{sum(grid.failures)} edits failed and have no score"] if sum(grid.failures) else []
        if skipped:
            notes.append(f"layers {', '.join(map(str, skipped))} were not brute-forced (--layers)")
        return self.result(handle, cost, scores, grid.metric(metric), grid.case_ids,
                           excluded=skipped, higher_is_better=higher_is_better(metric), notes=notes)

    def search(self, handle: ModelHandle, requests, split: str = "proxy") -> Grid:
        s: BruteForceSettings = self.settings
        if not requests:
            raise LocateError("brute force needs at least one request")
        if s.metric != OVERALL and not supports(s.metric, requests):
            raise LocateError(f"none of the requests has the data for metric {s.metric!r}")
        metrics = (*TEACHER_FORCED, "fluency") if s.metric == "fluency" else None
        editor = get_editor(s.editor, **s.editor_overrides)
        runner = CellRunner(handle, editor, metrics,
                            fluency_procedure=fluency_procedure(editor.profile))
        runner.pre_edit(list(requests))  # the unedited model, once
        layers = parse_layers(s.layers, handle.num_layers)
        cells = [(CellKey(handle.name, s.dataset, split, s.editor, layer, str(r.case_id), s.seed), r)
                 for r in requests for layer in layers]
        rows = run_cells(cells, runner, requests_per_batch=s.batch_requests,
                         label=f"brute force ({s.editor}, request x layer)")
        failed = [row for row in rows if row.error]
        if failed:
            log.warning("%d of %d edits failed; first: %s", len(failed), len(rows), failed[0].error)
        return grid_of(s.dataset, split, s.editor, rows)
