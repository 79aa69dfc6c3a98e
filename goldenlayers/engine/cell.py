"""One cell of brute force: edit one request at one layer with one editor, score it, restore.

This is the only place in goldenlayers that edits, evaluates and restores; the brute-force locator,
the study and ``locate --verify`` all run cells. A cell's row (``CellRow``) is self-describing (model,
data set, split, editor, layer, case id, seed) so rows from many runs can share one results file.

The per-unit ``overall`` is the mean of the teacher-forced metrics the request has (all lie in
[0, 1], so no normalisation is needed and rows can be averaged, bootstrapped and paired like any
other metric). Reports also show the paper's Overall, min-max normalised over the rows compared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing import EditError, Editor
from goldenlayers.editing.base import Prepared
from goldenlayers.evaluate import (METRICS, OVERALL, TEACHER_FORCED, PreEditState,
                                   compute_pre_edit, evaluate)
from goldenlayers.evaluate.fluency import FLUENCY_PROCEDURES
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.unchanged import UnchangedWeights

log = logging.getLogger(__name__)

CELL_METRICS = (*METRICS, OVERALL)  # every metric a row may carry, by its full name


@dataclass(frozen=True, order=True)
class CellKey:
    """What identifies a cell: the same key always gives the same row."""

    model: str
    dataset: str
    split: str  # "proxy" or "test" (or "held-out" for locate --verify)
    editor: str
    layer: int
    case_id: str
    seed: int

    def text(self) -> str:
        """A JSON list: no separator can collide with a case id."""
        return json.dumps([self.model, self.dataset, self.split, self.editor, self.layer,
                           self.case_id, self.seed])

    def unit_seed(self) -> int:
        """The seed the cell's random generators start from: depends only on the key, so a row is
        the same whatever order, process or executor computed it."""
        digest = hashlib.sha256(f"{self.seed}:{self.text()}".encode()).digest()
        return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class CellRow:
    """The result of one cell: its key, every metric by full name, and what it cost."""

    key: CellKey
    metrics: dict[str, float]  # absent: not measurable for this request (or the edit failed)
    seconds: float  # edit + evaluation + restore, wall time
    edit_seconds: float = 0.0  # the edit alone
    notes: tuple[str, ...] = ()
    error: str | None = None  # why the edit could not be made (the weights were left unchanged)

    def to_dict(self) -> dict[str, Any]:
        k = self.key
        return {"model": k.model, "dataset": k.dataset, "split": k.split, "editor": k.editor,
                "layer": k.layer, "case_id": k.case_id, "seed": k.seed, **self.metrics,
                "seconds": round(self.seconds, 4), "edit_seconds": round(self.edit_seconds, 4),
                "notes": list(self.notes), "error": self.error}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellRow:
        key = CellKey(str(data["model"]), str(data["dataset"]), str(data["split"]),
                      str(data["editor"]), int(data["layer"]), str(data["case_id"]),
                      int(data["seed"]))
        metrics = {name: float(data[name]) for name in CELL_METRICS if data.get(name) is not None}
        return cls(key, metrics, float(data.get("seconds", 0.0)),
                   float(data.get("edit_seconds", 0.0)), tuple(data.get("notes") or ()),
                   data.get("error"))

    def same_result(self, other: CellRow, tolerance: float = 0.0) -> bool:
        """Equal key, error and metrics (within ``tolerance``); costs may differ."""
        if self.key != other.key or self.error != other.error:
            return False
        if set(self.metrics) != set(other.metrics):
            return False
        return all(abs(self.metrics[m] - other.metrics[m]) <= tolerance for m in self.metrics)


def unit_overall(metrics: dict[str, float]) -> float | None:
    """Mean of the teacher-forced metrics present (None when there is none)."""
    values = [metrics[name] for name in TEACHER_FORCED if name in metrics]
    return sum(values) / len(values) if values else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class CellRunner:
    """Runs cells on one loaded model with one editor; remembers each request's pre-edit state
    (the unedited model's locality predictions), computed once per request before its first edit,
    and the unedited passes over a batch of requests that their values start from at every layer.
    Both rest on the runner owning the model's weights: every cell restores them bit for bit, and
    nothing else may change them while the runner is in use.

    ``fluency_procedure``: how fluency is measured, "greedy" (ours) or "easyedit" (sampled, seeded);
    the caller chooses it, usually with its editor's profile (``editing.fluency_procedure``)."""

    handle: ModelHandle
    editor: Editor
    metrics: tuple[str, ...] | None = None  # None: the teacher-forced ones
    fluency_requests: frozenset[str] = frozenset()  # "data set/case id" of those that get fluency
    fluency_procedure: str = "greedy"
    _pre: PreEditState | None = field(default=None, repr=False)
    # kept while the weights are unchanged, i.e. between cells: passed to ``Editor.prepare`` only
    _reuse: UnchangedWeights = field(default_factory=UnchangedWeights, repr=False)

    def __post_init__(self) -> None:
        if self.fluency_procedure not in FLUENCY_PROCEDURES:
            raise ValueError(f"fluency_procedure must be one of {', '.join(FLUENCY_PROCEDURES)}, "
                             f"not {self.fluency_procedure!r}")

    def pre_edit(self, requests: list[EditRequest]) -> PreEditState:
        """The pre-edit state of ``requests``, computing only the ones not seen yet. Must be
        called while the model is unedited (``run`` does)."""
        new = [r for r in requests if self._pre is None or r not in self._pre]
        if new:
            state = compute_pre_edit(self.handle, new)
            self._pre = state if self._pre is None else self._pre.merged(state)
        return self._pre  # type: ignore[return-value]

    def run(self, key: CellKey, request: EditRequest) -> CellRow:
        """Edit ``request`` alone at ``key.layer``, evaluate it, restore the weights bit for bit."""
        return self.run_batch([(key, request)])[0]

    def run_batch(self, cells: Sequence[tuple[CellKey, EditRequest]]) -> list[CellRow]:
        """Each cell as ``run`` does, with the values of consecutive cells at the same layer
        optimised together first (``Editor.prepare``): every cell's edit starts from the same
        weights, restored after each, so their values can be computed in one batch."""
        for key, request in cells:
            if str(request.case_id) != key.case_id:
                raise ValueError(f"cell {key.text()} given request {request.case_id!r}")
        pre = self.pre_edit([request for _, request in cells])
        rows: list[CellRow] = []
        for layer, group in groupby(cells, key=lambda cell: cell[0].layer):
            group = list(group)
            start = time.perf_counter()
            # no edit is in place between cells; a row keeps no losses, so the loss after the
            # last update is not measured
            prepared = self.editor.prepare(self.handle, [request for _, request in group], layer,
                                           last_loss=False, reuse=self._reuse)
            share = (time.perf_counter() - start) / len(group)
            rows += [self._cell(key, request, pre, value, share)
                     for (key, request), value in zip(group, prepared)]
        return rows

    def _cell(self, key: CellKey, request: EditRequest, pre: PreEditState, prepared: Prepared,
              prepare_seconds: float) -> CellRow:
        metrics = list(self.metrics or TEACHER_FORCED)
        if f"{key.dataset}/{key.case_id}" in self.fluency_requests and "fluency" not in metrics:
            metrics.append("fluency")
        seed_everything(key.unit_seed())
        start = time.perf_counter() - prepare_seconds
        try:
            with self.editor.edited(self.handle, [request], key.layer, prepared=prepared):
                edit_seconds = time.perf_counter() - start
                evaluation = evaluate(self.handle, [request], pre=pre, metrics=metrics,
                                      fluency_procedure=self.fluency_procedure)
        except EditError as error:  # the edit was not made; the weights are unchanged
            log.warning("%s: %s", key.text(), error)
            return CellRow(key, {}, time.perf_counter() - start, error=str(error))
        values = {name: float(value) for name, value in evaluation.per_request[0].values().items()
                  if value is not None and not math.isnan(value)}
        overall = unit_overall(values)
        if overall is not None:
            values[OVERALL] = overall
        return CellRow(key, values, time.perf_counter() - start, edit_seconds)


def layer_batches(keys: Sequence[CellKey], requests_per_batch: int = 4) -> list[list[int]]:
    """Indices of ``keys`` in batches for ``CellRunner.run_batch``: one layer's cells of at most
    ``requests_per_batch`` consecutive requests (of one data set and split). Blocks of requests go
    layer by layer, so each block is complete before the next starts (as in the order of
    ``keys``), and a stopped run loses at most one batch per worker. The order of ``keys`` makes
    the blocks: a block's value optimisation recomputes its widest request's columns for every
    row, so callers order requests by that width first
    (``editing.batches.ordered_for_batching``)."""
    return [batch for block in request_blocks(keys, requests_per_batch) for batch in block]


def request_blocks(keys: Sequence[CellKey], requests_per_batch: int = 4) -> list[list[list[int]]]:
    """``layer_batches`` grouped by block of requests: each block's batches, layer by layer in
    the order of ``keys``. A runner that takes a block's batches in this order starts their values
    from one shared pass (values.py, "the first step, shared by the layers")."""
    if requests_per_batch < 1:
        raise ValueError(f"requests_per_batch must be at least 1, not {requests_per_batch}")
    blocks: list[list[list[int]]] = []
    indices = range(len(keys))
    for _, group in groupby(indices, key=lambda i: (keys[i].dataset, keys[i].split)):
        group = list(group)
        case_ids = list(dict.fromkeys(keys[i].case_id for i in group))
        for start in range(0, len(case_ids), requests_per_batch):
            block = set(case_ids[start: start + requests_per_batch])
            in_block = [i for i in group if keys[i].case_id in block]
            blocks.append([[i for i in in_block if keys[i].layer == layer]
                           for layer in dict.fromkeys(keys[i].layer for i in in_block)])
    return blocks
