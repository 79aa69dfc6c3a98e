"""MEMIT (Meng et al. 2023): the same least squares as EMMET's, spread over a window of layers.

Asked to edit at ``layer``, MEMIT changes layers (layer - window + 1) .. layer. The target z of each
request is the residual stream leaving the last of them (its block output) at the subject, found by
the v* optimisation at that block. Then, layer by layer from the lowest, each takes its share of
what is still missing: R = (z - z_now) / (layers left), delta W = R K^T (w C + K K^T)^-1, with K
and z_now measured on the model the previous layers already changed.

On Gemma, whose post-feed-forward norm sits between the MLP and the residual stream, spreading a
residual target over MLP outputs is MEMIT's linear approximation, as it is for every model across
layers.
"""

from __future__ import annotations

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.base import Editor, LayerUpdate, RequestEdit, add_update, register
from goldenlayers.editing.batches import RequestBatch, prepared_batch
from goldenlayers.editing.config import MemitConfig
from goldenlayers.editing.covariance import second_moment
from goldenlayers.editing.errors import EditError
from goldenlayers.editing.keys import at_subject, mean_key, template_keys
from goldenlayers.editing.updates import UpdateError, memit_update
from goldenlayers.editing.values import optimise_value
from goldenlayers.models.handle import ModelHandle


@register
class Memit(Editor):
    name = "memit"
    family = "memit"
    config_class = MemitConfig

    def layers_for(self, handle: ModelHandle, layer: int) -> tuple[int, ...]:
        handle.adapter.check_layer(handle.model, layer)
        window = self.config_for(handle).window
        return tuple(range(max(0, layer - window + 1), layer + 1))

    def _edit(self, handle: ModelHandle, requests: list[EditRequest], layer: int,
              config: MemitConfig) -> tuple[list[LayerUpdate], list[RequestEdit]]:
        layers = self.layers_for(handle, layer)
        block = handle.adapter.block(handle.model, layers[-1])
        batches = [prepared_batch(handle, request, config, self.cache) for request in requests]
        values = [optimise_value(handle, rb, layers[-1], block, config) for rb in batches]
        targets = torch.stack([v.value for v in values], dim=1)  # z (d_model, E)
        updates = []
        for i, current_layer in enumerate(layers):
            keys = self._keys(handle, batches, current_layer)  # (d_in, E)
            now = self._residuals(handle, batches, layers[-1])  # (d_model, E)
            moment = second_moment(handle, current_layer, config.mom2_n_tokens, self.cache)
            try:
                left, right = memit_update((targets - now) / (len(layers) - i), keys,
                                           moment.matrix, config.mom2_update_weight)
            except UpdateError as error:
                ids = ", ".join(str(r.case_id) for r in requests)
                raise EditError(f"MEMIT batch of requests {ids} at layer {current_layer}: {error}; "
                                f"the weights are unchanged") from error
            update = LayerUpdate(current_layer, left.float(), right.float())
            add_update(handle, update)
            updates.append(update)
        edits = [RequestEdit(request=rb.request, layer=layers[-1], key=keys[:, j], value=v.value,
                             value_before=v.value_before, losses=v.losses)
                 for j, (rb, v) in enumerate(zip(batches, values))]
        return updates, edits

    @staticmethod
    def _keys(handle: ModelHandle, batches: list[RequestBatch], layer: int) -> torch.Tensor:
        return torch.stack([mean_key(template_keys(handle, rb, layer)) for rb in batches], dim=1)

    @staticmethod
    def _residuals(handle: ModelHandle, batches: list[RequestBatch], layer: int) -> torch.Tensor:
        """The residual stream leaving block ``layer`` at each bare prompt's subject (d_model, E)."""
        block = handle.adapter.block(handle.model, layer)
        return torch.stack([at_subject(handle, rb, block, inputs=False, rows=1)[0]
                            for rb in batches], dim=1)
