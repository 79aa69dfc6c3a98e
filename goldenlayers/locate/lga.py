"""Layer Gradient Analysis (paper §5.1; docs/method.md, LGA): score each layer by the inner product
of the layer-restricted gradients of the new- and old-target losses, summed over a proxy set.

The inner products are exact but cheap. For a linear map applied at positions t, dL/dW = sum_t d_t k_t^T
(d_t the gradient at the map's output, k_t its input), so for two sequences a and b

    <G_a, G_b>_F = sum( (D_a D_b^T) * (K_a K_b^T) )

and no d_out x d_in gradient is ever built. Keys come from forward hooks and output gradients from
backward hooks on every layer at once; the new- and old-target sequences of many requests share one
padded batch and one backward pass (rows do not interact, so the backward of the sum of the per-row
losses gives each row's own gradients).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from goldenlayers.locate.answers import old_answers
from goldenlayers.locate.base import (LayerScores, LocateError, Locator, check_choice,
                                      check_positive, register, summarise)
from goldenlayers.locate.fences import DIRECTIONS
from goldenlayers.locate.measure import measure
from goldenlayers.models.handle import ModelHandle, target_nll
from goldenlayers.models.hooks import trace
from goldenlayers.progress import track

log = logging.getLogger(__name__)

WEIGHTS = ("edit-matrix", "mlp")
AGGREGATIONS = ("sum", "mean")


@dataclass
class LGASettings:
    fence_k: float | None = 1.0  # Tukey's k; None turns the fences off
    direction: str = "argmax"  # or "argmin" (the paper leaves the sign open)
    weights: str = "edit-matrix"  # the matrix editors rewrite, or "mlp": every matrix of the MLP
    aggregation: str = "sum"  # or "mean" over requests (same ranking)
    normalise: bool = False  # cosine instead of the raw inner product
    batch_size: int = 16  # requests per forward/backward pass (twice as many rows)
    top_k: int = 5
    greedy_tokens: int = 8  # tokens generated for a request that has no old answer

    def __post_init__(self) -> None:
        if self.fence_k is not None:
            check_positive("fence_k", self.fence_k, allow_zero=True)
        check_choice("direction", self.direction, DIRECTIONS)
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        for name in ("batch_size", "top_k", "greedy_tokens"):
            check_positive(name, getattr(self, name))


# --- the math -------------------------------------------------------------------------------------


def gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Gram matrices (B, Ta, Tb) of (B, Ta, d) and (B, Tb, d), in float64."""
    return a.double() @ b.double().transpose(1, 2)


def gram_inner_products(d_a: torch.Tensor, k_a: torch.Tensor, d_b: torch.Tensor,
                        k_b: torch.Tensor) -> torch.Tensor:
    """<G_a, G_b>_F per row (B,) for G = sum_t d_t k_t^T, without building G.

    d_*: output gradients (B, T, d_out); k_*: keys (B, T, d_in), zero at positions to ignore.
    """
    return (gram(d_a, d_b) * gram(k_a, k_b)).sum(dim=(1, 2))


def masked(keys: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Keys (B, T, d_in) with padding positions zeroed, so they cannot leak into the Gram matrix."""
    return keys * attention_mask.unsqueeze(-1).to(keys.dtype)


# --- where the gradients are taken ----------------------------------------------------------------


def layer_sites(handle: ModelHandle, weights: str) -> dict[str, tuple[int, nn.Module]]:
    """Module name -> (layer, linear module) for every matrix whose gradient enters the score."""
    adapter, model = handle.adapter, handle.model
    sites = {}
    for layer in range(handle.num_layers):
        if weights == "edit-matrix":
            sites[adapter.edit_matrix_name(layer)] = (layer, adapter.edit_module(model, layer))
            continue
        mlp = adapter.mlp_module(model, layer)
        for name in adapter.mlp_weight_names:
            sites[f"{adapter.mlp_name(layer)}.{name}"] = (layer, mlp.get_submodule(name))
    return sites


class GramAccumulator:
    """Turns each site's keys and output gradients into s_i(l) terms as they arrive.

    The batch holds B new-target rows, then the B old-target rows of the same requests. The forward
    pass leaves only the (B, T, T) Gram matrices of the keys (never the keys of every layer); when
    the site's output gradient arrives in the backward pass, the product is summed at once.
    """

    def __init__(self, sites: dict[str, tuple[int, nn.Module]], attention_mask: torch.Tensor,
                 num_layers: int):
        self.layer_of = {name: layer for name, (layer, _) in sites.items()}
        self.mask = attention_mask  # (2B, T)
        self.b = attention_mask.shape[0] // 2
        self.key_grams: dict[str, tuple[torch.Tensor, ...]] = {}
        # [<g_new, g_old>, |g_new|^2, |g_old|^2] per request and layer: (3, B, L)
        self.out = torch.zeros(3, self.b, num_layers, dtype=torch.float64,
                               device=attention_mask.device)

    def on_keys(self, name: str, keys: torch.Tensor) -> None:
        k_new, k_old = masked(keys, self.mask).split(self.b)  # (B, T, d_in) each
        self.key_grams[name] = (gram(k_new, k_old), gram(k_new, k_new), gram(k_old, k_old))

    def on_grads(self, name: str, grads: torch.Tensor) -> None:
        d_new, d_old = grads.split(self.b)  # (B, T, d_out) each, zero at padding
        kk_new_old, kk_new_new, kk_old_old = self.key_grams.pop(name)
        layer = self.layer_of[name]
        self.out[0, :, layer] += (gram(d_new, d_old) * kk_new_old).sum(dim=(1, 2))
        self.out[1, :, layer] += (gram(d_new, d_new) * kk_new_new).sum(dim=(1, 2))
        self.out[2, :, layer] += (gram(d_old, d_old) * kk_old_old).sum(dim=(1, 2))


def batch_inner_products(handle: ModelHandle, prompts: Sequence[str], new: Sequence[str],
                         old: Sequence[str], weights: str) -> torch.Tensor:
    """(3, B, L): per request and layer, <g_new, g_old>, |g_new|^2 and |g_old|^2.

    One forward and backward of the summed per-row target losses. No parameter requires grad: the
    embedding output is made a leaf that does, so the gradient reaches every layer while the
    weights stay untouched.
    """
    batch = handle.batch(list(prompts) * 2, list(new) + list(old))  # rows: B new, then B old
    sites = layer_sites(handle, weights)
    grams = GramAccumulator(sites, batch.attention_mask, handle.num_layers)
    embedding = handle.model.get_submodule(handle.adapter.embedding)
    with torch.enable_grad(), \
            trace({"embedding": embedding}, edit_output=lambda _, out: out.requires_grad_(True)), \
            trace({name: module for name, (_, module) in sites.items()},
                  on_input=grams.on_keys, on_output_grad=grams.on_grads):
        target_nll(handle, batch).sum().backward()
    if grams.key_grams:
        missing = next(iter(grams.key_grams))
        raise LocateError(f"no gradient reached {missing}: it does not feed the loss")
    return grams.out


# --- the locator ---------------------------------------------------------------------------------


@register
class LGALocator(Locator):
    name = "lga"
    settings_class = LGASettings

    def locate(self, handle: ModelHandle, requests) -> LayerScores:
        s: LGASettings = self.settings
        if not requests:
            raise LocateError("LGA needs at least one request")
        with measure(handle.device) as cost:
            olds, notes = old_answers(handle, requests, s.greedy_tokens)
            used = [i for i, old in enumerate(olds) if old]
            if len(used) < len(requests):
                notes.append(f"{len(requests) - len(used)} requests skipped: no old answer found")
            if not used:
                raise LocateError("no request has an old answer to compare the new target with")
            per_request = self._contributions(handle, [requests[i] for i in used],
                                              [olds[i] for i in used])  # (R, L)
            scores = per_request.sum(0) if s.aggregation == "sum" else per_request.mean(0)
        excluded, golden, top = summarise(scores.tolist(), fence_k=s.fence_k,
                                          direction=s.direction, top_k=s.top_k)
        return LayerScores(
            method=self.name, model=handle.name, model_fingerprint=handle.fingerprint,
            scores=scores.tolist(), excluded=excluded, golden_layer=golden, top_k=top,
            per_request=per_request.tolist(), seconds=cost.seconds,
            peak_memory_bytes=cost.peak_memory_bytes, settings=self.settings_dict(),
            direction=s.direction, request_ids=[str(requests[i].case_id) for i in used],
            notes=notes)

    def _contributions(self, handle: ModelHandle, requests, olds: list[str]) -> torch.Tensor:
        """s_i(l) for every request and layer (R, L), float64 on the CPU."""
        s: LGASettings = self.settings
        starts = range(0, len(requests), s.batch_size)
        rows = []
        for start in track(starts, "LGA gradients", total=len(starts)):
            chunk = requests[start: start + s.batch_size]
            inner, norm_new, norm_old = batch_inner_products(
                handle, [r.prompt for r in chunk], [r.target_new for r in chunk],
                olds[start: start + s.batch_size], s.weights)
            if s.normalise:
                inner = inner / (norm_new * norm_old).sqrt().clamp(min=1e-30)
            rows.append(inner.cpu())
        return torch.cat(rows)
