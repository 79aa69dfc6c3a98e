"""Brute force (paper §4): edit each request alone at each layer, score it, restore exactly.

The result is the full matrix A[request, layer, metric]; from it come the golden layer per metric
(argmax over layers of the mean over requests, ties to the shallower layer) and each request's
sample-wise optimal layer and score. Exact and slow: requests x layers edits.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from goldenlayers.editing import EditError, get_editor
from goldenlayers.evaluate import METRICS, compute_pre_edit, evaluate, supports
from goldenlayers.locate.base import (LayerScores, LocateError, Locator, check_positive, register,
                                      summarise)
from goldenlayers.locate.fences import rank_layers
from goldenlayers.locate.measure import measure
from goldenlayers.models.handle import ModelHandle
from goldenlayers.progress import track

log = logging.getLogger(__name__)


@dataclass
class BruteForceSettings:
    editor: str = "r-rome"
    editor_overrides: dict[str, Any] = field(default_factory=dict)  # hyperparameters of the editor
    metrics: tuple[str, ...] = ("rewrite_accuracy",)  # the first one ranks layers in ``locate``
    top_k: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.metrics, str):
            self.metrics = (self.metrics,)
        self.metrics = tuple(self.metrics)
        if not self.metrics:
            raise LocateError("brute force needs at least one metric")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise LocateError(f"unknown metric {unknown[0]!r}; the metrics are {', '.join(METRICS)}")
        check_positive("top_k", self.top_k)


@dataclass
class SampleOptimum:
    """Per request: the layer where it scores best (ties: shallower; None: no score) and that score."""

    layers: list[int | None]
    scores: list[float | None]


@dataclass
class BruteForceResult:
    """A[request][layer][metric] (None where an edit failed or the request lacks the metric's data)."""

    model: str
    model_fingerprint: str
    editor: str
    metrics: list[str]
    request_ids: list[str]
    matrix: list[list[list[float | None]]]
    seconds: float
    peak_memory_bytes: int | None
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.matrix[0]) if self.matrix else 0

    def values(self, metric: str) -> list[list[float | None]]:
        """A[:, :, metric] as request x layer."""
        if metric not in self.metrics:
            raise LocateError(f"metric {metric!r} was not scored; scored: {', '.join(self.metrics)}")
        m = self.metrics.index(metric)
        return [[cell[m] for cell in row] for row in self.matrix]

    def layer_means(self, metric: str) -> list[float]:
        """Mean over requests per layer (requests without a value left out; NaN if none has one)."""
        columns = zip(*self.values(metric))
        return [_mean([v for v in column if v is not None]) for column in columns]

    def golden_layers(self) -> dict[str, int]:
        return {metric: self.layer_scores(metric).golden_layer for metric in self.metrics}

    def sample_optimal(self, metric: str) -> SampleOptimum:
        layers, scores = [], []
        for row in self.values(metric):
            missing = [layer for layer, value in enumerate(row) if value is None]
            filled = [-math.inf if value is None else value for value in row]
            best = rank_layers(filled, missing, "argmax")
            layers.append(best[0] if best else None)
            scores.append(row[best[0]] if best else None)
        return SampleOptimum(layers, scores)

    def layer_scores(self, metric: str, top_k: int | None = None) -> LayerScores:
        """The locator view of one metric: mean score per layer, no fences, argmax."""
        scores = self.layer_means(metric)
        excluded, golden, top = summarise(scores, fence_k=None, direction="argmax",
                                          top_k=top_k or self.settings.get("top_k", 5))
        return LayerScores(
            method="brute-force", model=self.model, model_fingerprint=self.model_fingerprint,
            scores=scores, excluded=excluded, golden_layer=golden, top_k=top,
            per_request=self.values(metric), seconds=self.seconds,
            peak_memory_bytes=self.peak_memory_bytes, settings={**self.settings, "metric": metric},
            request_ids=self.request_ids, notes=self.notes)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(asdict(self), indent=indent)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@register
class BruteForceLocator(Locator):
    name = "brute-force"
    settings_class = BruteForceSettings

    def locate(self, handle: ModelHandle, requests) -> LayerScores:
        """Golden layer by the first metric; ``search`` gives the whole matrix."""
        return self.search(handle, requests).layer_scores(self.settings.metrics[0])

    def search(self, handle: ModelHandle, requests) -> BruteForceResult:
        s: BruteForceSettings = self.settings
        if not requests:
            raise LocateError("brute force needs at least one request")
        lacking = [m for m in s.metrics if not supports(m, requests)]
        if lacking:
            raise LocateError(f"none of the requests has the data for metric {lacking[0]!r}")
        editor = get_editor(s.editor, **s.editor_overrides)
        layers = range(handle.num_layers)
        with measure(handle.device) as cost:
            pre = compute_pre_edit(handle, requests)  # the unedited model, once
            matrix = [[None] * len(layers) for _ in requests]
            failures = []
            cells = [(i, layer) for i in range(len(requests)) for layer in layers]
            for i, layer in track(cells, f"brute force ({s.editor})"):
                try:
                    matrix[i][layer] = self._score(handle, editor, requests[i], layer, pre)
                except EditError as error:
                    failures.append(f"request {requests[i].case_id} at layer {layer}: {error}")
                    matrix[i][layer] = [None] * len(s.metrics)
        notes = ([f"{len(failures)} edits failed and have no score; first: {failures[0]}"]
                 if failures else [])
        return BruteForceResult(
            model=handle.name, model_fingerprint=handle.fingerprint, editor=s.editor,
            metrics=list(s.metrics), request_ids=[str(r.case_id) for r in requests], matrix=matrix,
            seconds=cost.seconds, peak_memory_bytes=cost.peak_memory_bytes,
            settings=self.settings_dict(), notes=notes)

    def _score(self, handle: ModelHandle, editor, request, layer: int, pre) -> list[float | None]:
        """Edit ``request`` alone at ``layer``, score it, and restore the weights exactly."""
        with editor.edited(handle, [request], layer):
            evaluation = evaluate(handle, [request], pre=pre, metrics=self.settings.metrics)
        row = evaluation.per_request[0]
        return [getattr(row, metric) for metric in self.settings.metrics]
