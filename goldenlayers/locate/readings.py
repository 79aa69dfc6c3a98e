"""LGA readings: the ways the paper's layer score can be read, as pure functions of stored products.

Our copy of the paper lost its formula, so several readings are plausible (docs/method.md, "Layer
Gradient Analysis"): which matrix, which old answer, raw inner product or cosine, how requests are
combined, Tukey's k, argmax or argmin. One forward and backward per (weights, old answer) gives
``GradientProducts``: <g_new, g_old>, |g_new|^2 and |g_old|^2 per request and layer. Every other
choice is a cheap function of those, so a reading's layer can be recomputed without the model, and
bootstrap resamples of the requests cost nothing.

A reading, given the per-request similarity s_i(l) (raw: <g_new, g_old>; cosine: that over
|g_new| |g_old|):

1. Fences: Tukey's fences over the summed similarity S(l) = sum_i s_i(l), for every combination,
   so the outlier step means the same thing whichever way the requests are then combined.
2. Combine over the kept layers only:
   - ``sum``: S(l); the golden layer is its argmax (argmin).
   - ``mean-rank``: each request ranks the kept layers by s_i(l), best first (1 = its largest for
     argmax, its smallest for argmin; equal values: the shallower layer first); the score is the
     mean rank, and the golden layer has the lowest.
   - ``votes``: each request votes for its best kept layer; the score is the number of votes, and
     the golden layer has the most.
   Excluded layers take no part: their combined score is NaN (``sum`` keeps S(l), as before).
3. Ties in the combined score go to the shallower layer, as everywhere in ``fences``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from goldenlayers.engine.ranking import DIRECTIONS, oriented, parse_direction, rank_layers
from goldenlayers.locate.answers import OLD_ANSWER_SOURCES
from goldenlayers.locate.base import LayerStability, LocateError, check_choice, check_positive
from goldenlayers.locate.fences import excluded_layers

WEIGHTS = ("edit-matrix", "mlp")  # the matrix editors rewrite, or every matrix of the block's MLP
SIMILARITIES = ("raw", "cosine")
COMBINES = ("sum", "mean-rank", "votes")
FENCE_KS = (1.0, 1.5, None)  # the paper's k = 1, the classical 1.5, and no fences


# --- what the model gives: the gradient products --------------------------------------------------


@dataclass(frozen=True, eq=False)
class GradientProducts:
    """Per request and layer (R, L), float64: <g_new, g_old>_F, |g_new|_F^2 and |g_old|_F^2.

    g = dL/dW_l restricted to ``weights`` (the edit matrix, or every MLP matrix of layer l summed
    over matrices); the old-target loss uses ``old_answer``'s answers. Rows follow ``request_ids``
    (requests with no old answer are left out and said so in ``notes``).
    """

    weights: str
    old_answer: str
    request_ids: tuple[str, ...]
    inner: np.ndarray  # (R, L)
    squared_norm_new: np.ndarray  # (R, L)
    squared_norm_old: np.ndarray  # (R, L)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("old_answer", self.old_answer, OLD_ANSWER_SOURCES)
        object.__setattr__(self, "request_ids", tuple(map(str, self.request_ids)))
        object.__setattr__(self, "notes", tuple(self.notes))
        for name in ("inner", "squared_norm_new", "squared_norm_old"):
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.ndim != 2 or array.shape != (len(self.request_ids), array.shape[1]):
                raise LocateError(f"{name} must be (requests={len(self.request_ids)}, layers), "
                                  f"not {array.shape}")
            object.__setattr__(self, name, array)
        if not self.inner.shape == self.squared_norm_new.shape == self.squared_norm_old.shape:
            raise LocateError("inner and the squared norms must have the same shape")

    @property
    def num_layers(self) -> int:
        return self.inner.shape[1]

    @property
    def num_requests(self) -> int:
        return self.inner.shape[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the arrays as nested lists (floats round-trip exactly through JSON)."""
        return {"weights": self.weights, "old_answer": self.old_answer,
                "request_ids": list(self.request_ids), "inner": self.inner.tolist(),
                "squared_norm_new": self.squared_norm_new.tolist(),
                "squared_norm_old": self.squared_norm_old.tolist(), "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GradientProducts:
        arrays = {name: np.asarray(data[name], dtype=np.float64).reshape(len(data["request_ids"]), -1)
                  for name in ("inner", "squared_norm_new", "squared_norm_old")}
        return cls(data["weights"], data["old_answer"], tuple(data["request_ids"]), **arrays,
                   notes=tuple(data.get("notes", ())))


# --- a reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LGAReading:
    """One way to read the layer score; ``name`` is short and stable, ``parse`` reads it back."""

    weights: str = "edit-matrix"
    old_answer: str = "dataset"
    similarity: str = "raw"
    combine: str = "sum"
    fence_k: float | None = 1.0  # Tukey's k; None: no fences
    direction: str = "argmax"

    def __post_init__(self) -> None:
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("old_answer", self.old_answer, OLD_ANSWER_SOURCES)
        check_choice("similarity", self.similarity, SIMILARITIES)
        check_choice("combine", self.combine, COMBINES)
        check_choice("direction", self.direction, DIRECTIONS)
        if self.fence_k is not None:
            check_positive("fence_k", self.fence_k, allow_zero=True)
            object.__setattr__(self, "fence_k", float(self.fence_k))

    @property
    def name(self) -> str:
        """E.g. ``edit-matrix/dataset/raw/sum/k1/argmax``; no fences: ``nofence`` for ``k1``."""
        fence = "nofence" if self.fence_k is None else f"k{self.fence_k:g}"
        return "/".join((self.weights, self.old_answer, self.similarity, self.combine, fence,
                         self.direction))

    @classmethod
    def parse(cls, name: str) -> LGAReading:
        parts = name.strip().split("/")
        if len(parts) != 6:
            raise LocateError(f"a reading name has 6 parts, weights/old_answer/similarity/combine/"
                              f"fence/direction (e.g. {DEFAULT_READING.name}), not {name!r}")
        weights, old_answer, similarity, combine, fence, direction = parts
        if fence == "nofence":
            fence_k = None
        else:
            try:
                fence_k = float(fence.removeprefix("k")) if fence.startswith("k") else math.nan
            except ValueError:
                fence_k = math.nan
            if math.isnan(fence_k):
                raise LocateError(f"the fence part of a reading is k<number> or nofence, not {fence!r}")
        return cls(weights, old_answer, similarity, combine, fence_k, direction)

    def __str__(self) -> str:
        return self.name


# The reading LGASettings and `goldenlayers locate` default to: the edit matrix's gradients against
# the data set's old answer (the model's greedy one where missing), cosine per request and layer,
# layers ranked per request and the ranks averaged, Tukey's fences with k = 1, the best mean rank.
# Chosen on the evidence campaign's results by rule 5 of docs/findings.md (campaign/rules.py keeps
# the rules and every earlier choice).
DEFAULT_READING = LGAReading(similarity="cosine", combine="mean-rank")


def all_readings(fence_ks: Sequence[float | None] = FENCE_KS) -> list[LGAReading]:
    """Every combination of weights, old answer, similarity, combine, fence k and direction."""
    return [LGAReading(*choice) for choice in itertools.product(
        WEIGHTS, OLD_ANSWER_SOURCES, SIMILARITIES, COMBINES, fence_ks, DIRECTIONS)]


def products_for(products: Iterable[GradientProducts], reading: LGAReading) -> GradientProducts:
    """The products a reading is computed from (same weights and old answer)."""
    for candidate in products:
        if (candidate.weights, candidate.old_answer) == (reading.weights, reading.old_answer):
            return candidate
    raise LocateError(f"no gradient products for weights={reading.weights}, "
                      f"old_answer={reading.old_answer} (reading {reading.name})")


# --- the pure functions of a reading --------------------------------------------------------------


def similarity_matrix(products: GradientProducts, similarity: str) -> np.ndarray:
    """s_i(l) per request and layer (R, L): the raw inner product or the cosine."""
    check_choice("similarity", similarity, SIMILARITIES)
    if similarity == "raw":
        return products.inner
    # The floor keeps a zero gradient (a layer the loss does not reach) at 0 instead of NaN.
    norms = np.sqrt(products.squared_norm_new * products.squared_norm_old)
    return products.inner / np.maximum(norms, 1e-30)


def fenced_layers(per_request: np.ndarray, fence_k: float | None) -> list[int]:
    """Layers Tukey's fences drop, computed on the summed similarity S(l) (see the module doc)."""
    return excluded_layers(per_request.sum(axis=0).tolist(), fence_k)


def request_ranks(per_request: np.ndarray, kept: Sequence[int], direction: str) -> np.ndarray:
    """(R, K) rank of each kept layer within each request, 1 = best; equal values: shallower first."""
    best_first = -oriented(per_request[:, kept], parse_direction(direction))
    # A stable sort keeps equal values in layer order (kept is ascending).
    order = np.argsort(best_first, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, len(kept) + 1)[None, :].repeat(len(order), 0), 1)
    return ranks


def combined_scores(per_request: np.ndarray, excluded: Sequence[int], combine: str,
                    direction: str) -> np.ndarray:
    """(L,) the combination's score per layer; NaN for excluded layers under mean-rank and votes."""
    check_choice("combine", combine, COMBINES)
    if combine == "sum":
        return per_request.sum(axis=0)
    dropped = set(excluded)
    kept = [layer for layer in range(per_request.shape[1]) if layer not in dropped]
    scores = np.full(per_request.shape[1], np.nan)
    if not kept:
        return scores
    ranks = request_ranks(per_request, kept, direction)  # (R, K)
    if combine == "mean-rank":
        scores[kept] = ranks.mean(axis=0)
    else:
        scores[kept] = (ranks == 1).sum(axis=0)
    return scores


def scores_higher_is_better(reading: LGAReading) -> bool:
    """Which end of ``reading_scores`` is best: the reading's own direction for sums; the lowest
    mean rank; the most votes."""
    return {"sum": parse_direction(reading.direction), "mean-rank": False,
            "votes": True}[reading.combine]


@dataclass(frozen=True, eq=False)
class ReadingResult:
    """A reading applied to one request set: scores (L,), excluded layers and the golden layer."""

    scores: np.ndarray
    excluded: list[int]
    golden_layer: int
    higher_is_better: bool  # which end of ``scores`` is best (``scores_higher_is_better``)
    ranking: list[int] = field(default_factory=list)  # kept layers, best first


def read_similarity(per_request: np.ndarray, reading: LGAReading) -> ReadingResult:
    """A reading applied to a per-request similarity matrix (R, L) (fences, combine, choice)."""
    if per_request.shape[0] == 0:
        raise LocateError("a reading needs at least one request")
    excluded = fenced_layers(per_request, reading.fence_k)
    scores = combined_scores(per_request, excluded, reading.combine, reading.direction)
    higher_is_better = scores_higher_is_better(reading)
    ranking = rank_layers(scores, excluded, higher_is_better)
    if not ranking:
        raise LocateError(f"every layer is excluded under {reading.name}: no layer to choose")
    return ReadingResult(scores, excluded, ranking[0], higher_is_better, ranking)


def read(products: GradientProducts, reading: LGAReading) -> ReadingResult:
    """The reading on these products; they must have the reading's weights and old answer."""
    if (products.weights, products.old_answer) != (reading.weights, reading.old_answer):
        raise LocateError(f"reading {reading.name} needs products of weights={reading.weights}, "
                          f"old_answer={reading.old_answer}; these are {products.weights}, "
                          f"{products.old_answer}")
    return read_similarity(similarity_matrix(products, reading.similarity), reading)


def reading_scores(products: GradientProducts, reading: LGAReading) -> np.ndarray:
    """(L,) the reading's per-layer scores (sum: S(l); mean-rank: mean rank; votes: votes)."""
    return read(products, reading).scores


def reading_layer(products: GradientProducts, reading: LGAReading) -> int:
    """The golden layer under the reading."""
    return read(products, reading).golden_layer


# --- stability: bootstrap over the requests -------------------------------------------------------


def layer_stability(per_request: np.ndarray | GradientProducts, reading: LGAReading,
                    resamples: int = 1000, seed: int = 0) -> LayerStability:
    """Bootstrap: resample the rows (requests) with replacement, redo the reading, count winners.

    ``per_request`` is the (R, L) similarity matrix, or products (the reading's similarity is taken).
    """
    check_positive("resamples", resamples)
    if isinstance(per_request, GradientProducts):
        per_request = similarity_matrix(per_request, reading.similarity)
    rows = np.asarray(per_request, dtype=np.float64)
    draws = np.random.default_rng(seed).integers(0, rows.shape[0], size=(resamples, rows.shape[0]))
    wins: dict[int, int] = {}
    for draw in draws:
        layer = read_similarity(rows[draw], reading).golden_layer
        wins[layer] = wins.get(layer, 0) + 1
    ranked = sorted(wins.items(), key=lambda item: (-item[1], item[0]))
    return LayerStability(resamples, seed, {layer: count / resamples for layer, count in ranked})
