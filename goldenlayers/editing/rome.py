"""ROME (Meng et al. 2022), as its original code computes the update: the bare prompt's key in
Lambda's numerator and denominator, the template-averaged key k* elsewhere (docs/method.md,
ROME)."""

from __future__ import annotations

import torch

from goldenlayers.editing.base import register
from goldenlayers.editing.config import RomeConfig
from goldenlayers.editing.rank_one import RankOneEditor


@register
class Rome(RankOneEditor):
    name = "rome"

    def denominator_key(self, keys: torch.Tensor, config: RomeConfig) -> torch.Tensor:
        return keys[0]  # row 0 is the bare prompt (template "")
