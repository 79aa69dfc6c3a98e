"""Units of work and their records: one request edited at one layer, or one locator run.

A unit is identified by a key (a JSON list, so no separator can collide with a case id). Its record
splits into the *result* (deterministic: the same settings give the same result on any executor, in
any order, after any interruption) and the *cost* (wall time, memory: differs from run to run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

SPLITS = ("proxy", "test")


@dataclass(frozen=True, order=True)
class EditUnit:
    """Edit request ``case_id`` of ``dataset``'s ``split`` alone at ``layer`` with ``editor``."""

    dataset: str
    split: str
    case_id: str
    layer: int
    editor: str

    @property
    def key(self) -> str:
        return json.dumps(["edit", self.dataset, self.split, self.case_id, self.layer, self.editor])


@dataclass(frozen=True, order=True)
class LocateUnit:
    """Locator ``method`` run on ``dataset``'s ``split`` requests."""

    dataset: str
    method: str
    split: str = "proxy"

    @property
    def key(self) -> str:
        return json.dumps(["locate", self.dataset, self.method, self.split])


@dataclass(frozen=True)
class EditRecord:
    """The metrics of one edit unit (metric name -> value; absent metrics were not measurable).

    ``error`` says why the edit could not be made (an ``EditError``: the weights were left as they
    were); such a unit is done, has no metrics, and is counted in the report.
    """

    unit: EditUnit
    metrics: dict[str, float]
    seconds: float = 0.0  # edit + evaluation, wall time
    edit_seconds: float = 0.0  # the edit alone
    error: str | None = None

    def result_json(self) -> str:
        return json.dumps({"metrics": self.metrics, "error": self.error}, sort_keys=True)

    def cost_json(self) -> str:
        return json.dumps({"seconds": self.seconds, "edit_seconds": self.edit_seconds})

    @classmethod
    def from_row(cls, unit: EditUnit, result: str, cost: str) -> EditRecord:
        data, costs = json.loads(result), json.loads(cost)
        return cls(unit, data["metrics"], costs["seconds"], costs["edit_seconds"], data.get("error"))


@dataclass(frozen=True)
class LocateRecord:
    """A locator's per-layer scores on a request set: the deterministic part of ``LayerScores``."""

    unit: LocateUnit
    scores: tuple[float, ...]  # one per layer, 0 .. L-1
    excluded: tuple[int, ...]  # layers the locator left out (LGA's fences)
    golden_layer: int
    direction: str = "argmax"  # which end of the scores is best
    settings: dict[str, object] = field(default_factory=dict)
    per_request: tuple[tuple[float, ...], ...] = ()  # [request][layer] contributions
    seconds: float = 0.0
    peak_memory_bytes: int | None = None

    @classmethod
    def from_layer_scores(cls, unit: LocateUnit, scores) -> LocateRecord:
        """From ``goldenlayers.locate.LayerScores``."""
        return cls(unit, tuple(map(float, scores.scores)), tuple(scores.excluded),
                   int(scores.golden_layer), scores.direction, dict(scores.settings),
                   tuple(tuple(map(float, row)) for row in scores.per_request),
                   float(scores.seconds), scores.peak_memory_bytes)

    def result_json(self) -> str:
        return json.dumps({"scores": list(self.scores), "excluded": list(self.excluded),
                           "golden_layer": self.golden_layer, "direction": self.direction,
                           "settings": self.settings,
                           "per_request": [list(row) for row in self.per_request]},
                          sort_keys=True, default=str)

    def cost_json(self) -> str:
        return json.dumps({"seconds": self.seconds, "peak_memory_bytes": self.peak_memory_bytes})

    @classmethod
    def from_row(cls, unit: LocateUnit, result: str, cost: str) -> LocateRecord:
        data, costs = json.loads(result), json.loads(cost)
        return cls(unit, tuple(data["scores"]), tuple(data["excluded"]), data["golden_layer"],
                   data["direction"], data["settings"],
                   tuple(tuple(row) for row in data["per_request"]),
                   costs["seconds"], costs.get("peak_memory_bytes"))


def unit_from_key(key: str) -> EditUnit | LocateUnit:
    kind, *fields = json.loads(key)
    if kind == "edit":
        return EditUnit(*fields)
    if kind == "locate":
        return LocateUnit(*fields)
    raise ValueError(f"unknown unit kind {kind!r} in key {key}")
