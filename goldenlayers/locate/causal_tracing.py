"""Causal mediation analysis (causal tracing, Meng et al. 2022): the baseline layer locator.

For each proxy fact the model knows: corrupt the subject tokens' embeddings with Gaussian noise
(std = noise x sigma, sigma the std of subject-token embeddings over the proxy set), then restore the
clean MLP outputs at the last subject token for a window of layers around l and see how much of the
answer's probability comes back. IE(l) = p_restored(l) - p_corrupted, averaged over facts; the CMA
layer is its argmax. The noise samples run as one batch and the same noise serves every layer.
"""

from __future__ import annotations


import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from goldenlayers.locate.answers import old_answers
from goldenlayers.locate.base import LayerScores, LocateError, Locator, check_positive, register
from goldenlayers.locate.fences import excluded_layers
from goldenlayers.locate.measure import measure
from goldenlayers.models.handle import ModelHandle, apply_head, hidden_states, last_prompt_logits
from goldenlayers.models.hooks import trace
from goldenlayers.models.tokens import TokenBatch, encode_prompt_target, subject_token_span
from goldenlayers.progress import track

log = logging.getLogger(__name__)


@dataclass
class CMASettings:
    noise: float = 3.0  # noise std as a multiple of sigma (0 gives no corruption)
    samples: int = 10  # noise samples per fact, run as one batch
    window: int = 10  # layers restored around l: l - window//2 .. l + (window - window//2) - 1
    seed: int = 0
    known_only: bool = True  # only facts whose greedy first token is the answer's first token
    min_known: int = 3  # fewer known facts than this: no layer (tracing noise is not a layer)
    layers_per_batch: int = 8  # restoring runs that share one forward pass (rows: this x samples)
    fence_k: float | None = None  # causal tracing uses no fences; a k applies Tukey's fences
    top_k: int = 5
    greedy_tokens: int = 8  # tokens generated for a fact that has no old answer

    def __post_init__(self) -> None:
        check_positive("noise", self.noise, allow_zero=True)
        for name in ("samples", "window", "layers_per_batch", "top_k", "greedy_tokens"):
            check_positive(name, getattr(self, name))
        if self.fence_k is not None:
            check_positive("fence_k", self.fence_k, allow_zero=True)


# --- small pieces -------------------------------------------------------------------------------


def window_layers(layer: int, window: int, num_layers: int) -> range:
    """The layers restored for layer l: l - window//2 .. l + window - window//2 - 1, clipped."""
    low = layer - window // 2
    return range(max(0, low), min(num_layers, low + window))


def window_masks(num_layers: int, window: int) -> torch.Tensor:
    """(1 + L, L) bool: row 0 restores nothing (the corrupted run), row 1 + l restores l's window."""
    masks = torch.zeros(1 + num_layers, num_layers, dtype=torch.bool)
    for layer in range(num_layers):
        masks[1 + layer, list(window_layers(layer, window, num_layers))] = True
    return masks


def repeat_rows(batch: TokenBatch, n: int) -> TokenBatch:
    """A one-row batch repeated n times (views, no copies)."""
    return TokenBatch(*(t.expand(n, *t.shape[1:]) for t in (
        batch.input_ids, batch.attention_mask, batch.position_ids, batch.labels,
        batch.subject_last, batch.prompt_last)))


def answer_probability(handle: ModelHandle, batch: TokenBatch, answer_id: int) -> torch.Tensor:
    """p(answer's first token) at each row's last prompt position (B,)."""
    rows = torch.arange(batch.input_ids.shape[0], device=handle.device)
    hidden = hidden_states(handle, batch)[rows, batch.prompt_last]  # (B, d_model)
    return apply_head(handle, hidden).float().softmax(-1)[:, answer_id]


def embedding_sigma(handle: ModelHandle, requests) -> float:
    """Std of the embedding-module outputs at subject tokens, over all the requests' subjects."""
    embedding = handle.model.get_submodule(handle.adapter.embedding)
    values = []
    for request in requests:
        batch = handle.batch([request.prompt])
        first, end = subject_token_span(handle.tokenizer, request.prompt, request.subject)
        with torch.no_grad(), trace({"e": embedding}, capture_outputs=True, stop_after="e") as rec:
            handle.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        values.append(rec.outputs["e"][0, first:end].float().flatten())
    return torch.cat(values).std().item()


# --- one fact ------------------------------------------------------------------------------------


@torch.no_grad()
def clean_run(handle: ModelHandle, batch: TokenBatch, answer_id: int,
              sites: dict[str, nn.Module]) -> tuple[float, dict[str, torch.Tensor]]:
    """The clean answer probability and each site's clean output (T, d) for a one-row batch."""
    with trace(sites, capture_outputs=True) as record:
        p_clean = answer_probability(handle, batch, answer_id)[0].item()
    return p_clean, {name: out[0] for name, out in record.outputs.items()}


@torch.no_grad()
def restored_probabilities(handle: ModelHandle, batch: TokenBatch, answer_id: int, *,
                           noise: torch.Tensor, span: tuple[int, int], sites: dict[str, nn.Module],
                           clean: dict[str, torch.Tensor], restore: torch.Tensor,
                           positions: Sequence[int]) -> torch.Tensor:
    """Mean answer probability over noise samples for each restore configuration (C,).

    noise (S, span length, d_model) is added to the embedding-module output at the subject tokens;
    restore (C, n_sites) says which sites (in ``sites`` order) get their clean output back at
    ``positions`` in configuration c. All C x S runs share one batch (rows: config-major).
    """
    configs, samples = restore.shape[0], noise.shape[0]
    names = list(sites)
    row_restores = restore.to(handle.device).repeat_interleave(samples, dim=0)  # (C*S, n_sites)
    positions = torch.as_tensor(list(positions), device=handle.device)
    embedding = handle.model.get_submodule(handle.adapter.embedding)

    def corrupt(_: str, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, span[0]:span[1]] += noise.to(out.dtype).repeat(configs, 1, 1)
        return out

    def patch(name: str, out: torch.Tensor) -> torch.Tensor:
        rows = row_restores[:, names.index(name)].nonzero()[:, 0]
        if rows.numel() == 0:
            return out
        out = out.clone()
        out[rows[:, None], positions[None, :]] = clean[name][positions].to(out.dtype)
        return out

    with trace({"embedding": embedding}, edit_output=corrupt), trace(sites, edit_output=patch):
        probs = answer_probability(handle, repeat_rows(batch, configs * samples), answer_id)
    return probs.view(configs, samples).mean(-1)


def trace_fact(handle: ModelHandle, request, answer: str, noise: torch.Tensor,
               settings: CMASettings) -> tuple[float, float, torch.Tensor]:
    """(p_clean, p_corrupted, p_restored per layer (L,)) for one fact."""
    batch = handle.batch([request.prompt], subjects=[request.subject])
    answer_id = encode_prompt_target(handle.tokenizer, request.prompt, answer)[1][0]
    span = subject_token_span(handle.tokenizer, request.prompt, request.subject)
    num_layers = handle.num_layers
    sites = {handle.adapter.mlp_name(l): handle.adapter.mlp_module(handle.model, l)
             for l in range(num_layers)}
    p_clean, clean = clean_run(handle, batch, answer_id, sites)
    masks = window_masks(num_layers, settings.window)
    probs = torch.cat([
        restored_probabilities(handle, batch, answer_id, noise=noise, span=span, sites=sites,
                               clean=clean, restore=chunk, positions=[span[1] - 1])
        for chunk in masks.split(settings.layers_per_batch)])
    return p_clean, probs[0].item(), probs[1:].cpu()


# --- which facts, and the locator ----------------------------------------------------------------


@torch.no_grad()
def known_facts(handle: ModelHandle, requests, answers: list[str]) -> list[bool]:
    """Whether the model's greedy next token after each prompt is the answer's first token."""
    logits = last_prompt_logits(handle, handle.batch([r.prompt for r in requests]))  # (B, V)
    greedy = logits.argmax(-1).tolist()
    return [bool(answer) and encode_prompt_target(handle.tokenizer, r.prompt, answer)[1][0] == g
            for r, answer, g in zip(requests, answers, greedy)]


@register
class CausalTracingLocator(Locator):
    name = "cma"
    settings_class = CMASettings
    in_study = True
    score_label = "CMA indirect effect"

    def locate(self, handle: ModelHandle, requests) -> LayerScores:
        s: CMASettings = self.settings
        if not requests:
            raise LocateError("causal tracing needs at least one request")
        with measure(handle.device) as cost:
            answers, notes = old_answers(handle, requests, s.greedy_tokens)
            used, more_notes = self._facts(handle, requests, answers)
            notes += more_notes
            applicable = not s.known_only or len(used) >= s.min_known
            if applicable:
                sigma = embedding_sigma(handle, [requests[i] for i in used])
                effects = self._effects(handle, requests, answers, used, sigma)  # (F, L)
                scores = effects.mean(0)
        if not applicable:
            return self._not_applicable(handle, requests, used, notes, cost)
        notes.append(f"sigma (std of subject-token embeddings) = {sigma:.4g}; "
                     f"noise std = {s.noise * sigma:.4g}")
        return self.result(handle, cost, scores.tolist(), effects.tolist(),
                           [requests[i].case_id for i in used],
                           excluded=excluded_layers(scores.tolist(), s.fence_k), notes=notes)

    def _not_applicable(self, handle: ModelHandle, requests, used: list[int], notes: list[str],
                        cost) -> LayerScores:
        """No layer: tracing facts the model does not know measures noise, not where facts live."""
        notes.append(f"not applicable: the model knows {len(used)} of the {len(requests)} facts "
                     f"(fewer than min_known = {self.settings.min_known}), so there is nothing to "
                     "trace; no golden layer")
        return self.not_applicable(handle, cost, notes, [str(requests[i].case_id) for i in used])

    def _facts(self, handle: ModelHandle, requests,
               answers: list[str]) -> tuple[list[int], list[str]]:
        """Indices of the facts to trace, and a note saying how many were kept and why."""
        with_answer = [i for i, answer in enumerate(answers) if answer]
        if not with_answer:
            raise LocateError("no request has an old answer to trace")
        if not self.settings.known_only:
            return with_answer, [f"traced all {len(with_answer)} facts (known_only off)"]
        known = known_facts(handle, requests, answers)
        used = [i for i in with_answer if known[i]]
        note = (f"kept the {len(used)} of {len(requests)} facts the model knows (its greedy next "
                f"token is the old answer's first token); {len(requests) - len(used)} not "
                "applicable: the model does not know them")
        # without the data set's old answer, "knowing" the model's own greedy word is circular
        own = sum(1 for i in used if requests[i].target_old is None)
        if own:
            note += (f". {own} of the kept facts have no old answer in the data set: their old "
                     "answer is the first word of the model's own greedy continuation, so they "
                     "trace where the model forms its own prediction, not a fact it was shown "
                     "to know")
        return used, [note]

    def _effects(self, handle: ModelHandle, requests, answers: list[str], used: list[int],
                 sigma: float) -> torch.Tensor:
        """Indirect effects (F, L) of the traced facts, float64 on the CPU."""
        s: CMASettings = self.settings
        generator = torch.Generator().manual_seed(s.seed)
        d_model = handle.model.get_submodule(handle.adapter.embedding).weight.shape[1]
        rows = []
        for i in track(used, "causal tracing"):
            span = subject_token_span(handle.tokenizer, requests[i].prompt, requests[i].subject)
            noise = torch.randn(s.samples, span[1] - span[0], d_model, generator=generator)
            _, p_corrupted, p_restored = trace_fact(
                handle, requests[i], answers[i], (s.noise * sigma * noise).to(handle.device), s)
            rows.append((p_restored - p_corrupted).double())
        return torch.stack(rows)
