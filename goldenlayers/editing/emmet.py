"""EMMET (Gupta et al. 2024): a batch of requests in one equality-constrained update per layer,

    delta W = R D^-1 K^T C0^-1,   D = K^T C0^-1 K + emmet_lambda I,
    C0 = mom2_update_weight E[k k^T] (+ update_norm_lambda I),

as EasyEdit's emmet_main computes it: the targets z are block outputs at the window's last layer and
R = (z - z_now) / (layers left), as in MEMIT (window.py has the steps). The default window is the
one layer asked for; with one request and emmet_lambda = 0 the update maps the key k to W k + R.
"""

from __future__ import annotations

import torch

from goldenlayers.editing.base import register
from goldenlayers.editing.config import EmmetConfig
from goldenlayers.editing.covariance import SecondMoment
from goldenlayers.editing.updates import Factors, emmet_update
from goldenlayers.editing.window import WindowEditor


@register
class Emmet(WindowEditor):
    name = "emmet"
    config_class = EmmetConfig

    def layer_update(self, residuals: torch.Tensor, keys: torch.Tensor, moment: SecondMoment,
                     config: EmmetConfig) -> Factors:
        if config.update_norm_lambda == 0:
            whitened = moment.solve(keys).double() / config.mom2_update_weight  # C0^-1 K (d_in, E)
        else:
            eye = torch.eye(len(moment.matrix), dtype=torch.float64, device=moment.matrix.device)
            c0 = config.mom2_update_weight * moment.matrix.double() + config.update_norm_lambda * eye
            whitened = torch.linalg.solve(c0, keys.to(c0.device, torch.float64))
        return emmet_update(residuals, keys, whitened, config.emmet_lambda)
