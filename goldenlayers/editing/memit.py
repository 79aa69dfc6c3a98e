"""MEMIT (Meng et al. 2023): a batch of residual-stream targets spread over a window of layers.

Asked to edit at ``layer``, MEMIT changes layers (layer - window + 1) .. layer (window.py has the
steps, shared with EMMET). Each layer's share R of what is still missing is written by MEMIT's least
squares, delta W = R K^T (w C + K K^T)^-1 with w = mom2_update_weight.

On Gemma, whose post-feed-forward norm sits between the MLP and the residual stream, spreading a
residual target over MLP outputs is MEMIT's linear approximation, as it is for every model across
layers.
"""

from __future__ import annotations

import torch

from goldenlayers.editing.base import register
from goldenlayers.editing.config import MemitConfig
from goldenlayers.editing.covariance import SecondMoment
from goldenlayers.editing.updates import Factors, memit_update
from goldenlayers.editing.window import WindowEditor


@register
class Memit(WindowEditor):
    name = "memit"
    config_class = MemitConfig

    def layer_update(self, residuals: torch.Tensor, keys: torch.Tensor, moment: SecondMoment,
                     config: MemitConfig) -> Factors:
        return memit_update(residuals, keys, moment.matrix, config.mom2_update_weight)
