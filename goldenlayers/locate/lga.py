"""Layer Gradient Analysis (paper §5.1; docs/method.md, LGA): score each layer by the inner product
of the layer-restricted gradients of the new- and old-target losses, summed over a proxy set.

The inner products are exact but cheap. For a linear map applied at positions t, dL/dW = sum_t d_t k_t^T
(d_t the gradient at the map's output, k_t its input), so for two sequences a and b

    <G_a, G_b>_F = sum( (D_a D_b^T) * (K_a K_b^T) )

and no d_out x d_in gradient is ever built. Keys come from forward hooks and output gradients from
backward hooks on every layer at once; the new- and old-target sequences of many requests share one
padded batch and one backward pass (rows do not interact, so the backward of the sum of the per-row
losses gives each row's own gradients).

The gradient stage (``compute_products``) returns ``GradientProducts`` per (weights, old answer);
every reading of them (similarity, combination, fences, direction) lives in ``readings``, and the
locator is the settings' reading of one set of products.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from goldenlayers.locate.answers import greedy_answers, old_answers as read_old_answers
from goldenlayers.locate.base import LayerScores, LocateError, Locator, check_positive, register
from goldenlayers.locate.readings import (DEFAULT_READING, GradientProducts, LGAReading,
                                          layer_stability, read, similarity_matrix)
from goldenlayers.locate.measure import Measurement, measure
from goldenlayers.models.handle import ModelHandle, target_nll
from goldenlayers.models.hooks import trace
from goldenlayers.progress import track

log = logging.getLogger(__name__)


@dataclass
class LGASettings:
    """The reading (defaults: ``DEFAULT_READING``) and how the gradients are computed."""

    fence_k: float | None = DEFAULT_READING.fence_k  # Tukey's k; None turns the fences off
    direction: str = DEFAULT_READING.direction  # argmax or argmin (docs/method.md: the sign is open)
    weights: str = DEFAULT_READING.weights  # the matrix editors rewrite, or "mlp": every MLP matrix
    old_answer: str = DEFAULT_READING.old_answer  # "dataset" (greedy where missing) or "greedy"
    similarity: str = DEFAULT_READING.similarity  # "raw" inner product or "cosine"
    combine: str = DEFAULT_READING.combine  # "sum", "mean-rank" or "votes" over the requests
    batch_size: int = 16  # requests per forward/backward pass (twice as many rows)
    top_k: int = 5
    greedy_tokens: int = 8  # tokens generated for a greedy old answer
    stability_resamples: int = 1000  # bootstrap resamples of the requests; 0: no stability
    stability_seed: int = 0

    def __post_init__(self) -> None:
        self.reading()  # validates the reading's choices
        for name in ("batch_size", "top_k", "greedy_tokens"):
            check_positive(name, getattr(self, name))
        check_positive("stability_resamples", self.stability_resamples, allow_zero=True)

    def reading(self) -> LGAReading:
        return LGAReading(self.weights, self.old_answer, self.similarity, self.combine,
                          self.fence_k, self.direction)


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


# --- the gradient stage: products per (weights, old answer) -----------------------------------------


def request_products(handle: ModelHandle, requests, olds: Sequence[str], weights: str,
                     batch_size: int) -> torch.Tensor:
    """(3, R, L) <g_new, g_old>, |g_new|^2, |g_old|^2 of every request, float64 on the CPU."""
    starts = range(0, len(requests), batch_size)
    chunks = []
    for start in track(starts, f"LGA gradients ({weights})", total=len(starts)):
        chunk = requests[start: start + batch_size]
        chunks.append(batch_inner_products(
            handle, [r.prompt for r in chunk], [r.target_new for r in chunk],
            olds[start: start + batch_size], weights).cpu())
    return torch.cat(chunks, dim=1)


class NoOldAnswerError(LocateError):
    """No request has an old answer from the chosen source: LGA has nothing to compare with."""


_SOURCE = {"dataset": "the data set's, or the first word of the model's greedy continuation where "
                      "it has none",
           "greedy": "the first word of the model's greedy continuation"}


def compute_products(handle: ModelHandle, requests,
                     weights_set: Sequence[str] = ("edit-matrix", "mlp"),
                     old_answers: Sequence[str] = ("dataset", "greedy"), *,
                     batch_size: int = 16, greedy_tokens: int = 8) -> list[GradientProducts]:
    """``GradientProducts`` for each (weights, old answer): one forward and backward pass each.

    The model's greedy answers are generated once and serve both old-answer sources. Requests
    whose old answer is empty are left out of that source's products (and the notes say so).
    """
    if not requests:
        raise LocateError("LGA needs at least one request")
    needs_greedy = "greedy" in old_answers or any(r.target_old is None for r in requests)
    greedy = greedy_answers(handle, requests, greedy_tokens) if needs_greedy else None
    products = []
    for source in old_answers:
        olds, notes = read_old_answers(handle, requests, greedy_tokens, source, greedy)
        used = [i for i, old in enumerate(olds) if old]
        if len(used) < len(requests):
            notes.append(f"{len(requests) - len(used)} requests skipped: no old answer found")
        if not used:
            raise NoOldAnswerError(
                f"none of the {len(requests)} requests has an old answer ({_SOURCE[source]}) to "
                "compare the new target with")
        for weights in weights_set:
            inner, norm_new, norm_old = request_products(
                handle, [requests[i] for i in used], [olds[i] for i in used], weights, batch_size)
            products.append(GradientProducts(
                weights, source, tuple(str(requests[i].case_id) for i in used), inner.numpy(),
                norm_new.numpy(), norm_old.numpy(), tuple(notes)))
    return products


# --- the locator ---------------------------------------------------------------------------------


@register
class LGALocator(Locator):
    name = "lga"
    settings_class = LGASettings
    in_study = True
    score_label = "LGA score S(l)"

    @classmethod
    def shared_settings(cls, shared):
        """The bootstrap's seed is the run's seed, so one seed reproduces the whole run."""
        settings = super().shared_settings(shared)
        if "seed" in shared:
            settings["stability_seed"] = shared["seed"]
        return settings

    def locate(self, handle: ModelHandle, requests) -> LayerScores:
        s: LGASettings = self.settings
        with measure(handle.device) as cost:
            try:
                products, = compute_products(handle, requests, (s.weights,), (s.old_answer,),
                                             batch_size=s.batch_size, greedy_tokens=s.greedy_tokens)
            except NoOldAnswerError as error:
                products, reason = None, str(error)
        if products is None:  # as a model that ends every prompt at once, or answers "A: ..."
            other = "dataset" if s.old_answer == "greedy" else "greedy"
            return self.not_applicable(
                handle, cost, [f"not applicable: {reason}; no golden layer (--old-answer {other} "
                               "reads the old answers another way)"], [], reading=s.reading().name)
        return self.layer_scores(handle, products, cost)

    def layer_scores(self, handle: ModelHandle, products: GradientProducts,
                     cost: Measurement | None = None) -> LayerScores:
        """The settings' reading of these products as ``LayerScores`` (one implementation)."""
        s: LGASettings = self.settings
        reading = s.reading()
        result = read(products, reading)
        stability = (layer_stability(products, reading, s.stability_resamples, s.stability_seed)
                     if s.stability_resamples else None)
        return self.result(handle, cost or Measurement(), result.scores.tolist(),
                           similarity_matrix(products, reading.similarity).tolist(),
                           products.request_ids, excluded=result.excluded,
                           higher_is_better=result.higher_is_better, notes=products.notes,
                           stability=stability, reading=reading.name)
