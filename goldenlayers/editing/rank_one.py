"""The strategy ROME and R-ROME share: one rank-one update per request, requests in sequence.

For each request: k* from the context templates (keys.py), v* by optimisation at the edit matrix's
output (values.py), u = C^-1 k* with ``mom2_adjustment`` (else k*), and the rank-one update
(updates.py) that makes the matrix map ``denominator_key`` to v*. The two editors differ only in
that key: ROME's original code uses the bare prompt's key there, R-ROME uses k*.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.base import Editor, LayerUpdate, Prepared, PreparedRequest, RequestEdit
from goldenlayers.editing.batches import prepared_batch
from goldenlayers.editing.config import RomeConfig
from goldenlayers.editing.covariance import second_moment
from goldenlayers.editing.errors import EditError, describe
from goldenlayers.editing.keys import compute_dtype, edit_output, mean_key, template_keys
from goldenlayers.editing.updates import UpdateError, rank_one_update
from goldenlayers.editing.values import optimise_value, values_for_requests
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.unchanged import UnchangedWeights


class RankOneEditor(Editor):
    config_class = RomeConfig

    def u_key(self, keys: torch.Tensor, config: RomeConfig) -> torch.Tensor:
        """The key (d_in,) behind u = C^-1 k, from the template keys (n, d_in): k* by default."""
        return mean_key(keys)

    @abstractmethod
    def denominator_key(self, keys: torch.Tensor, config: RomeConfig) -> torch.Tensor:
        """The key (d_in,) the updated matrix maps to v*, from the template keys (n, d_in)."""

    def step_count(self, handle: ModelHandle, requests: list[EditRequest], layer: int) -> int:
        return len(requests)

    def statistics_layers(self, handle: ModelHandle, layer: int) -> tuple[int, ...]:
        return (layer,) if self.config_for(handle).mom2_adjustment else ()

    def prepare(self, handle: ModelHandle, requests: Sequence[EditRequest], layer: int,
                last_loss: bool = True, reuse: UnchangedWeights | None = None) -> list[Prepared]:
        """Each request's v* at the edit matrix's output, optimised together, and its keys."""
        config = self.config_for(handle)
        values = values_for_requests(handle, requests, layer,
                                     handle.adapter.edit_module(handle.model, layer), config,
                                     self.cache, last_loss, reuse)
        return [value if isinstance(value, EditError) else PreparedRequest(
                    value, template_keys(handle, prepared_batch(handle, request, config, self.cache),
                                         layer, reuse))
                for request, value in zip(requests, values)]

    def _steps(self, handle: ModelHandle, requests: list[EditRequest], layer: int,
               config: RomeConfig, prepared: Prepared = None
               ) -> Iterator[tuple[list[LayerUpdate], list[RequestEdit]]]:
        for request in requests:  # each on the model the previous ones edited
            update, edit = self.edit_one(handle, request, layer, config, prepared)
            yield [update], [edit]

    def edit_one(self, handle: ModelHandle, request: EditRequest, layer: int, config: RomeConfig,
                 prepared: PreparedRequest | None = None) -> tuple[LayerUpdate, RequestEdit]:
        """The rank-one update for one request on the current weights (which it leaves alone);
        ``prepared``: its v* and keys from ``prepare`` on these weights, else computed here."""
        rb = prepared_batch(handle, request, config, self.cache)
        if prepared is not None and prepared.keys is not None:
            keys = prepared.keys
        else:
            keys = template_keys(handle, rb, layer)  # (n_templates, d_in)
        k_star = mean_key(keys)
        if prepared is not None:
            value = prepared.value
        else:
            site = handle.adapter.edit_module(handle.model, layer)
            value = optimise_value(handle, rb, layer, site, config)
        u = self.u_key(keys, config)
        if config.mom2_adjustment:
            u = second_moment(handle, layer, config.mom2_n_samples,
                              config.mom2_text_tokens, self.cache).solve(u)
        key = self.denominator_key(keys, config)
        residual = value.value - edit_output(handle, layer, key)  # v* - (W k + b)
        try:
            left, right = rank_one_update(residual, u, key, config.denominator_tol)
        except UpdateError as error:
            raise EditError(f"{describe(request)} at layer {layer}: {error}; "
                            f"the weights are unchanged") from error
        edit = RequestEdit(request=request, layer=layer, key=k_star, value=value.value,
                           value_before=value.value_before, losses=value.losses)
        dtype = compute_dtype(handle)
        return LayerUpdate(layer, left.to(dtype), right.to(dtype)), edit
