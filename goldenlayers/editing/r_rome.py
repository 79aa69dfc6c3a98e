"""R-ROME (Gupta et al. 2024): ROME with the template-averaged key k* everywhere, which removes the
near-zero denominators behind ROME's "disabling edits" and its collapse in sequential editing."""

from __future__ import annotations

import torch

from goldenlayers.editing.base import register
from goldenlayers.editing.keys import mean_key
from goldenlayers.editing.rank_one import RankOneEditor


@register
class RRome(RankOneEditor):
    name = "r-rome"

    def denominator_key(self, keys: torch.Tensor) -> torch.Tensor:
        return mean_key(keys)
