"""EMMET (Gupta et al. 2024): a batch of requests in one equality-constrained update at one layer,

    delta W = (V - W K) (K^T C0^-1 K + lambda I)^-1 K^T C0^-1,   C0 = mom2_update_weight E[k k^T].

Every v* is optimised on the unedited model; with one request and lambda = 0 this is R-ROME with
mom2 adjustment.
"""

from __future__ import annotations

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.base import Editor, LayerUpdate, RequestEdit, add_update, register
from goldenlayers.editing.batches import prepared_batch
from goldenlayers.editing.config import EmmetConfig
from goldenlayers.editing.covariance import second_moment
from goldenlayers.editing.errors import EditError
from goldenlayers.editing.keys import edit_output, mean_key, template_keys
from goldenlayers.editing.updates import UpdateError, emmet_update
from goldenlayers.editing.values import optimise_value
from goldenlayers.models.handle import ModelHandle


@register
class Emmet(Editor):
    name = "emmet"
    family = "emmet"
    config_class = EmmetConfig

    def _edit(self, handle: ModelHandle, requests: list[EditRequest], layer: int,
              config: EmmetConfig) -> tuple[list[LayerUpdate], list[RequestEdit]]:
        site = handle.adapter.edit_module(handle.model, layer)
        edits = []
        for request in requests:
            rb = prepared_batch(handle, request, config, self.cache)
            value = optimise_value(handle, rb, layer, site, config)
            edits.append(RequestEdit(request=request, layer=layer,
                                     key=mean_key(template_keys(handle, rb, layer)),
                                     value=value.value, value_before=value.value_before,
                                     losses=value.losses))
        keys = torch.stack([e.key for e in edits], dim=1)  # (d_in, E)
        values = torch.stack([e.value for e in edits], dim=1)  # (d_out, E)
        moment = second_moment(handle, layer, config.mom2_n_tokens, self.cache)
        whitened = moment.solve(keys) / config.mom2_update_weight  # C0^-1 K
        try:
            left, right = emmet_update(values - edit_output(handle, layer, keys), keys, whitened,
                                       config.emmet_lambda)
        except UpdateError as error:
            ids = ", ".join(str(r.case_id) for r in requests)
            raise EditError(f"EMMET batch of requests {ids} at layer {layer}: {error}; "
                            f"the weights are unchanged") from error
        update = LayerUpdate(layer, left.float(), right.float())
        add_update(handle, update)
        return [update], edits
