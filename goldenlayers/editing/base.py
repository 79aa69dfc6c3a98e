"""The editor interface, its result records, and the registry.

Every editor's math, ``_steps``, yields its updates step by step without touching the weights
(one step per request for ROME, one per layer of the window for EMMET and MEMIT); ``_run`` applies
them, in one place. The public methods wrap it with the exact undo of restore.py:

    apply(handle, requests, layer)            in place; on any error the weights are as before
    compute(handle, requests, layer)          pure: the weights are as before afterwards
    with edited(handle, requests, layer):     edited inside, restored bit for bit on exit
    prepare(handle, requests, layer)          pure: what each request's edit alone computes from
                                              the current weights (its v*, its keys), for all at once

Brute force edits many requests one at a time at the same layer, each on the same weights, so
``prepare`` optimises all their values in one batch (values.optimise_values) and
``edited(handle, [request], layer, prepared=...)`` uses the request's one.

Invariant (as in ROME's ``execute_rome``): the model at the beginning == the model at the end,
except after a successful ``apply``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.cache import EditCache
from goldenlayers.editing.config import EditConfig, config_record, resolve
from goldenlayers.editing.covariance import second_moments
from goldenlayers.editing.errors import EditError
from goldenlayers.editing.profiles import check_profile, model_family
from goldenlayers.editing.restore import preserved, restore, snapshot
from goldenlayers.editing.values import ValueResult
from goldenlayers.errors import GoldenLayersError
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.unchanged import UnchangedWeights


@dataclass(frozen=True)
class PreparedRequest:
    """What one request's edit alone at one layer computes from the unedited weights."""

    value: ValueResult  # v* at the editor's value site
    keys: torch.Tensor | None = None  # (n_templates, d_in) the edit matrix's template keys, if used


Prepared = PreparedRequest | EditError | None  # one request's part of ``Editor.prepare``


@dataclass(frozen=True)
class LayerUpdate:
    """The change of one layer's edit matrix: delta W = left @ right.T, as [d_out, d_in]."""

    layer: int
    left: torch.Tensor  # (d_out, r)
    right: torch.Tensor  # (d_in, r)

    def delta(self) -> torch.Tensor:
        return self.left.double() @ self.right.double().T  # (d_out, d_in)

    @property
    def rank(self) -> int:
        return self.left.shape[1]


@dataclass(frozen=True)
class RequestEdit:
    """What the editor computed for one request: its key, its value before and after, the loss."""

    request: EditRequest
    layer: int  # where the value was optimised
    key: torch.Tensor  # k* (d_in,)
    value: torch.Tensor  # v* (d_out,)
    value_before: torch.Tensor  # the site's output at the bare prompt before the edit
    losses: tuple[float, ...]

    def summary(self) -> dict[str, Any]:
        return {"case_id": self.request.case_id, "layer": self.layer,
                "key_norm": float(self.key.norm()), "value_norm": float(self.value.norm()),
                "delta_norm": float((self.value - self.value_before).norm()),
                "loss_first": self.losses[0] if self.losses else None,
                "loss_last": self.losses[-1] if self.losses else None,
                "steps": len(self.losses), "losses": list(self.losses)}


@dataclass
class EditResult:
    editor: str
    layers: tuple[int, ...]
    updates: tuple[LayerUpdate, ...]
    edits: tuple[RequestEdit, ...]
    seconds: float
    model_name: str
    model_fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> tuple[EditRequest, ...]:
        return tuple(edit.request for edit in self.edits)

    def summary(self) -> dict[str, Any]:
        return {"editor": self.editor, "layers": list(self.layers), "seconds": self.seconds,
                "model": self.model_name, "fingerprint": self.model_fingerprint,
                "ranks": {u.layer: u.rank for u in self.updates},
                "requests": [edit.summary() for edit in self.edits]}


def add_update(handle: ModelHandle, update: LayerUpdate, sign: float = 1.0) -> None:
    """W_layer += sign * left @ right.T, in the weight's dtype and orientation."""
    handle.adapter.add_to_edit_weight(handle.model, update.layer, sign * update.delta())


def merge_updates(updates: Sequence[LayerUpdate]) -> tuple[LayerUpdate, ...]:
    """One update per layer: factors of the same layer side by side (their deltas add up)."""
    by_layer: dict[int, list[LayerUpdate]] = {}
    for update in updates:
        by_layer.setdefault(update.layer, []).append(update)
    return tuple(LayerUpdate(layer, torch.cat([u.left for u in group], 1),
                             torch.cat([u.right for u in group], 1))
                 for layer, group in sorted(by_layer.items()))


class Editor(ABC):
    """A knowledge editor. Hyperparameters: ``config_class`` fields, from the defaults table under
    ``profile`` (profiles.py) for the model's family, then ``overrides``."""

    name: ClassVar[str]
    config_class: ClassVar[type[EditConfig]]

    def __init__(self, profile: str = "default", cache: EditCache | None = None,
                 **overrides: Any) -> None:
        self.profile = check_profile(profile)
        self.overrides = self.config_class.from_overrides(overrides)
        self.config_class.from_dict(self.overrides)  # refuse a bad combination before any work
        self.cache = cache if cache is not None else EditCache()
        self._resolved: dict[tuple[str, str], EditConfig] = {}

    def config_for(self, handle: ModelHandle) -> EditConfig:
        """The resolved config on this model (the one place it lives): the table's row for the
        profile, the model's family and this editor, then this editor's overrides."""
        key = (handle.fingerprint, handle.name)
        if key not in self._resolved:
            family = model_family(handle.adapter.name, handle.name)
            self._resolved[key] = resolve(self.config_class, self.name, self.profile, family,
                                          self.overrides)
        return self._resolved[key]

    def config_record(self, handle: ModelHandle) -> dict[str, Any]:
        """The resolved config with its profile, as results store it (config.config_record)."""
        return config_record(self.config_for(handle), self.profile)

    def layers_for(self, handle: ModelHandle, layer: int) -> tuple[int, ...]:
        """The layers whose edit matrices this editor changes when asked to edit at ``layer``."""
        return (handle.adapter.check_layer(handle.model, layer),)

    def statistics_layers(self, handle: ModelHandle, layer: int) -> tuple[int, ...]:
        """The layers whose key statistics (covariance.py) an edit at ``layer`` reads: none unless
        the editor weighs its update by them."""
        return ()

    # --- the public methods -------------------------------------------------------------------

    def precompute_statistics(self, handle: ModelHandle, layers: Sequence[int]) -> None:
        """Compute (or load) the key statistics that edits at ``layers`` will read, all in one pass
        over the corpus, and cache them on disk, where workers on this machine find them. A study
        or brute force calls it before editing at every layer; without it each layer's statistics
        come in a pass of their own when first needed (the same numbers)."""
        needed = sorted({s for layer in layers for s in self.statistics_layers(handle, layer)})
        if needed:
            config = self.config_for(handle)
            second_moments(handle, needed, config.mom2_n_samples, config.mom2_text_tokens,
                           self.cache)

    def prepare(self, handle: ModelHandle, requests: Sequence[EditRequest], layer: int,
                last_loss: bool = True, reuse: UnchangedWeights | None = None) -> list[Prepared]:
        """Per request, what its edit alone at ``layer`` computes from the current weights, batched
        over the requests; a request that cannot be prepared gets its EditError. Editors without
        such a part return None for each. ``last_loss=False``: the value optimisation skips its
        last step, which only measures the loss (values.optimise_values). ``reuse``: work kept
        while the weights are unchanged, shared with the same requests' other layers (given by
        the engine's cell runner, which restores the weights after every edit)."""
        return [None] * len(requests)

    def apply(self, handle: ModelHandle, requests: Sequence[EditRequest], layer: int) -> EditResult:
        """Edit in place; on any error the weights are restored and the error raised."""
        saved = snapshot(handle, self.layers_for(handle, layer))
        try:
            return self._run(handle, requests, layer, keep=True)
        except BaseException:
            restore(handle, saved)
            raise

    def compute(self, handle: ModelHandle, requests: Sequence[EditRequest], layer: int) -> EditResult:
        """The edit's result without keeping it: the weights are as before afterwards.

        An edit of one step (one request for ROME and R-ROME, a one-layer window for EMMET and
        MEMIT) touches no weight and copies nothing. An edit of several steps (ROME's requests in
        sequence, a window of layers) must see each step applied before computing the next, so it
        runs inside one snapshot that is restored after."""
        if self.step_count(handle, list(requests), layer) == 1:
            return self._run(handle, requests, layer, keep=False)
        with preserved(handle, self.layers_for(handle, layer)):
            return self._run(handle, requests, layer, keep=False)

    @contextmanager
    def edited(self, handle: ModelHandle, requests: Sequence[EditRequest], layer: int, *,
               prepared: Prepared = None) -> Iterator[EditResult]:
        """The model is edited inside the block and restored bit for bit on exit, also on errors.

        ``prepared``: this one request's entry of ``prepare`` on the same weights (the caller's
        promise: they have not changed since)."""
        if prepared is not None and len(requests) != 1:
            raise ValueError("a prepared value is for an edit of one request alone")
        with preserved(handle, self.layers_for(handle, layer)):
            yield self._run(handle, requests, layer, keep=True, prepared=prepared)

    def _run(self, handle: ModelHandle, requests: Sequence[EditRequest], layer: int, *,
             keep: bool, prepared: Prepared = None) -> EditResult:
        """The one place updates are applied: between steps (the next one needs them), and after
        the last one when the edit is kept."""
        requests = list(requests)
        if not requests:
            raise EditError("no edit requests given")
        if isinstance(prepared, EditError):
            raise prepared
        config = self.config_for(handle)
        start = time.perf_counter()
        count = self.step_count(handle, requests, layer)
        steps = self._steps(handle, requests, layer, config, prepared)
        updates: list[LayerUpdate] = []
        edits: list[RequestEdit] = []
        for index in range(count):
            step_updates, step_edits = next(steps)
            updates += step_updates
            edits += step_edits
            if keep or index < count - 1:
                for update in step_updates:
                    add_update(handle, update)
        return EditResult(editor=self.name, layers=self.layers_for(handle, layer),
                          updates=merge_updates(updates), edits=tuple(edits),
                          seconds=time.perf_counter() - start, model_name=handle.name,
                          model_fingerprint=handle.fingerprint,
                          config=config_record(config, self.profile))

    @abstractmethod
    def step_count(self, handle: ModelHandle, requests: list[EditRequest], layer: int) -> int:
        """How many steps ``_steps`` yields for these requests."""

    @abstractmethod
    def _steps(self, handle: ModelHandle, requests: list[EditRequest], layer: int,
               config: EditConfig, prepared: Prepared = None
               ) -> Iterator[tuple[list[LayerUpdate], list[RequestEdit]]]:
        """The edit's math, step by step: each step's updates computed on the current weights,
        which it leaves alone; the caller applies a step before asking for the next. ``prepared``:
        the one request's entry of ``prepare``, used instead of computing it again."""


# --- the registry ---------------------------------------------------------------------------------

EDITORS: dict[str, type[Editor]] = {}


def register(cls: type[Editor]) -> type[Editor]:
    EDITORS[cls.name] = cls
    return cls


def get_editor(name: str, profile: str = "default", cache: EditCache | None = None,
               **overrides: Any) -> Editor:
    """An editor by name ('rome', 'r-rome', 'emmet', 'memit'), its defaults from ``profile``
    ("default" or "easyedit", profiles.py), with hyperparameter overrides (typed values or
    strings); an unknown key is refused, named."""
    return editor_class(name)(profile=profile, cache=cache, **overrides)


def editor_class(name: str) -> type[Editor]:
    """The registered editor class of ``name`` ('R_ROME' and 'r-rome' alike)."""
    key = name.lower().replace("_", "-")
    if key not in EDITORS:
        raise GoldenLayersError(f"unknown editor {name!r}; available: {', '.join(sorted(EDITORS))}")
    return EDITORS[key]
