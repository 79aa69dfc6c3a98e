"""The one way layers are ranked: scores, the layers left out, and which end is best.

Every picker reads its layers from here (the engine's grids, LGA's readings, causal tracing, brute
force), so the sign rule and the tie rule are written once: values are turned so that higher is
better, a value that is not a number counts as the worst, and equal values keep the shallower layer
first. A direction stored as text ("argmax", the highest is best; "argmin", the lowest) is read
with ``parse_direction``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from goldenlayers.errors import GoldenLayersError

DIRECTIONS = ("argmax", "argmin")  # as LGA readings and stored LayerScores name them


def parse_direction(direction: str) -> bool:
    """``higher_is_better`` of a direction's name: "argmax" -> True, "argmin" -> False."""
    if direction not in DIRECTIONS:
        raise GoldenLayersError(f"direction must be one of {', '.join(DIRECTIONS)}, not "
                                f"{direction!r}")
    return direction == "argmax"


def direction_name(higher_is_better: bool) -> str:
    return DIRECTIONS[0] if higher_is_better else DIRECTIONS[1]


def signed(values: Sequence[float] | np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Values (any shape) turned so that higher is better; NaN stays NaN (the sign rule)."""
    array = np.asarray(values, dtype=np.float64)
    return array if higher_is_better else -array


def oriented(values: Sequence[float] | np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """``signed``, with NaN (no edit made, no data) as the worst value, for picking."""
    return np.nan_to_num(signed(values, higher_is_better), nan=-np.inf)


def rank_layers(scores: Sequence[float] | np.ndarray, excluded: Sequence[int] = (),
                higher_is_better: bool = True) -> list[int]:
    """Indices of the kept scores, best first; equal scores keep the shallower one first."""
    values = oriented(scores, higher_is_better)
    dropped = set(excluded)
    kept = [i for i in range(len(values)) if i not in dropped]
    return sorted(kept, key=lambda i: (-values[i], i))


def best_layer(scores: Sequence[float] | np.ndarray, excluded: Sequence[int] = (),
               higher_is_better: bool = True) -> int:
    """The first of ``rank_layers``; every layer excluded is an error."""
    ranked = rank_layers(scores, excluded, higher_is_better)
    if not ranked:
        raise GoldenLayersError("every layer is excluded: there is no layer to choose")
    return ranked[0]
