"""R-ROME (Gupta et al. 2024): ROME with one key throughout, which removes the near-zero
denominators behind ROME's "disabling edits" and its collapse in sequential editing.

As its reference (EasyEdit's r_rome), the key is k*, the mean over templates, by default
(``enable_random_prefix_keys``), or the bare prompt's key (``enable_prompt_keys``).
"""

from __future__ import annotations

import torch

from goldenlayers.editing.base import register
from goldenlayers.editing.config import RRomeConfig
from goldenlayers.editing.keys import mean_key
from goldenlayers.editing.rank_one import RankOneEditor


@register
class RRome(RankOneEditor):
    name = "r-rome"
    config_class = RRomeConfig

    def u_key(self, keys: torch.Tensor, config: RRomeConfig) -> torch.Tensor:
        return keys[0] if config.enable_prompt_keys else mean_key(keys)

    def denominator_key(self, keys: torch.Tensor, config: RRomeConfig) -> torch.Tensor:
        return keys[0] if config.enable_prompt_keys else mean_key(keys)
