"""Outlier exclusion (Tukey's fences) from per-layer scores.

Pure functions on a score vector (one float per layer). Without the fences, edge layers with huge
gradients tend to win LGA (docs/method.md, "The fences"). The kept layers are ranked by
``engine.ranking``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def tukey_fences(scores: Sequence[float], k: float = 1.0) -> tuple[float, float]:
    """(low, high) = (Q1 - k*IQR, Q3 + k*IQR) over the finite scores.

    Quartiles use linear interpolation between order statistics (numpy's and torch's default).
    """
    if k < 0:
        raise ValueError(f"fence k must be >= 0, not {k}")
    finite = torch.tensor([s for s in scores if math.isfinite(s)], dtype=torch.float64)
    if finite.numel() == 0:
        raise ValueError("no finite scores to compute fences from")
    q1, q3 = torch.quantile(finite, torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
    iqr = q3 - q1
    return q1 - k * iqr, q3 + k * iqr


def excluded_layers(scores: Sequence[float], k: float | None = 1.0) -> list[int]:
    """Layers whose score lies outside the fences (or is not finite). ``k=None``: no fences."""
    if k is None:
        return [layer for layer, s in enumerate(scores) if not math.isfinite(s)]
    low, high = tukey_fences(scores, k)
    return [layer for layer, s in enumerate(scores) if not (math.isfinite(s) and low <= s <= high)]
