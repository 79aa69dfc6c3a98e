"""The strategy MEMIT and EMMET share, as their reference code (EasyEdit's memit_main, emmet_main)
computes it: a batch of requests, each with a target z for the residual stream, written into the
edit matrices of a window of layers (layer - window + 1) .. layer.

1. z (compute_z): the v* optimisation at the output of the *whole block* ``top`` = the window's last
   layer, at each request's subject's last token. The clamp bound is clamp_norm_factor times the
   norm of that block output at the bare prompt before the edit (values.py with the block as site).
2. For each layer of the window, lowest first, on the model the lower layers already changed
   (the key statistics C of every layer are those of the unedited model):
   keys K (d_in, E) as EasyEdit's compute_ks (keys.kinds_mean_key); z_now, the block output at
   ``top`` at each bare prompt; the residual R = (z - z_now) / (layers left); and the editor's
   least squares turns R, K and the keys' second moment C into delta W (``layer_update``).

With a window of one layer R = z - z_before: the change of the residual stream the edit must make,
which the edit matrix adds to its output (no W K is subtracted).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.base import Editor, LayerUpdate, Prepared, PreparedRequest, RequestEdit
from goldenlayers.editing.batches import RequestBatch, prepared_batch
from goldenlayers.editing.config import EditConfig
from goldenlayers.editing.covariance import SecondMoment, second_moments
from goldenlayers.editing.errors import EditError
from goldenlayers.editing.keys import at_subject, compute_dtype, kinds_mean_key, template_keys
from goldenlayers.editing.updates import Factors, UpdateError
from goldenlayers.editing.values import ValueResult, values_for_requests
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.unchanged import UnchangedWeights


class WindowEditor(Editor):
    def layers_for(self, handle: ModelHandle, layer: int) -> tuple[int, ...]:
        handle.adapter.check_layer(handle.model, layer)
        window = self.config_for(handle).window
        return tuple(range(max(0, layer - window + 1), layer + 1))

    def statistics_layers(self, handle: ModelHandle, layer: int) -> tuple[int, ...]:
        return self.layers_for(handle, layer)

    @abstractmethod
    def layer_update(self, residuals: torch.Tensor, keys: torch.Tensor, moment: SecondMoment,
                     config: EditConfig) -> Factors:
        """delta W's factors from residuals R (d_out, E), keys K (d_in, E) and C."""

    def step_count(self, handle: ModelHandle, requests: list[EditRequest], layer: int) -> int:
        return len(self.layers_for(handle, layer))  # one per layer of the window

    def prepare(self, handle: ModelHandle, requests: Sequence[EditRequest], layer: int,
                last_loss: bool = True, reuse: UnchangedWeights | None = None) -> list[Prepared]:
        """Each request's z at the output of the window's top block, optimised together."""
        values = values_for_requests(handle, requests, layer,
                                     handle.adapter.block(handle.model, layer),
                                     self.config_for(handle), self.cache, last_loss, reuse)
        return [v if isinstance(v, EditError) else PreparedRequest(v) for v in values]

    def _steps(self, handle: ModelHandle, requests: list[EditRequest], layer: int,
               config: EditConfig, prepared: Prepared = None
               ) -> Iterator[tuple[list[LayerUpdate], list[RequestEdit]]]:
        layers = self.layers_for(handle, layer)
        top = layers[-1]
        batches = [prepared_batch(handle, request, config, self.cache) for request in requests]
        values = [prepared.value] if prepared is not None else self._values(handle, requests, top)
        targets = torch.stack([v.value for v in values], dim=1)  # z (d_model, E)
        # every layer's statistics of the unedited model, before the lower layers change
        moments = list(second_moments(handle, layers, config.mom2_n_samples,
                                      config.mom2_text_tokens, self.cache).values())
        for i, current in enumerate(layers):
            keys = self._keys(handle, batches, current)  # (d_in, E)
            now = self._residuals(handle, batches, top)  # (d_model, E)
            try:
                left, right = self.layer_update((targets - now) / (len(layers) - i), keys,
                                                moments[i], config)
            except UpdateError as error:
                ids = ", ".join(str(r.case_id) for r in requests)
                raise EditError(f"{self.name.upper()} batch of requests {ids} at layer {current}: "
                                f"{error}; the weights are unchanged") from error
            dtype = compute_dtype(handle)
            update = LayerUpdate(current, left.to(dtype), right.to(dtype))
            last = i == len(layers) - 1
            edits = [RequestEdit(request=rb.request, layer=top, key=keys[:, j], value=v.value,
                                 value_before=v.value_before, losses=v.losses)
                     for j, (rb, v) in enumerate(zip(batches, values))] if last else []
            yield [update], edits  # the next layer's keys need this one applied

    def _values(self, handle: ModelHandle, requests: list[EditRequest], top: int) -> list[ValueResult]:
        """Every request's z, optimised together; the first request that has none raises."""
        values = self.prepare(handle, requests, top)
        for value in values:
            if isinstance(value, EditError):
                raise value
        return [value.value for value in values]  # type: ignore[union-attr]

    @staticmethod
    def _keys(handle: ModelHandle, batches: list[RequestBatch], layer: int) -> torch.Tensor:
        return torch.stack([kinds_mean_key(template_keys(handle, rb, layer)) for rb in batches],
                           dim=1)

    @staticmethod
    def _residuals(handle: ModelHandle, batches: list[RequestBatch], layer: int) -> torch.Tensor:
        """The residual stream leaving block ``layer`` at each bare prompt's subject (d_model, E)."""
        block = handle.adapter.block(handle.model, layer)
        return torch.stack([at_subject(handle, rb, block, inputs=False, rows=1)[0]
                            for rb in batches], dim=1)
