"""Values: the v* optimisation (docs/method.md, "The shared pieces"), in named steps.

A vector delta is added to the output of a site module (the edit matrix, or for MEMIT the whole
block) at the subject's last token in every row of the request batch. Adam minimises

    loss = mean_templates NLL(target_new)  +  kl_factor KL(p_now || p_before) on the KL prompt
           + v_weight_decay ||delta|| / ||v_before||^2

and after each step ||delta|| is clamped to clamp_norm_factor ||v_before||; v* = v_before + delta,
where v_before is the site's output at the bare prompt (row 0). As in ROME's code, the last step
only measures the loss, and the loop stops early once the loss is below ``v_loss_stop``.

Two ways to compute the logits give the same delta: ``fast`` (the default) runs the blocks below the
site and the columns before the subject once (models/partial.py) and applies the vocabulary head
only at scored positions; the plain way runs the whole model with full-vocabulary logits at every
position on every step, as reference implementations do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from goldenlayers.editing.batches import RequestBatch
from goldenlayers.editing.config import EditConfig
from goldenlayers.editing.errors import EditError, describe
from goldenlayers.editing.keys import as_float, compute_dtype
from goldenlayers.models.handle import ModelHandle, apply_head
from goldenlayers.models.hooks import trace
from goldenlayers.models.partial import resume_point, run_from


@dataclass(frozen=True)
class ValueResult:
    value: torch.Tensor  # v* (d,) float32 (float64 for a float64 model)
    value_before: torch.Tensor  # v_before (d,): the site's output at the bare prompt's subject
    delta: torch.Tensor  # v* - v_before
    losses: tuple[float, ...]  # the whole loss at each step


def optimise_value(handle: ModelHandle, rb: RequestBatch, layer: int, site: nn.Module,
                   config: EditConfig) -> ValueResult:
    """Optimise delta at ``site`` (a module inside block ``layer``) for one request batch."""
    logits_of = _logits_fn(handle, rb, layer, config.fast)
    offset = rb.first_edited_column if config.fast else 0
    rows = torch.arange(rb.batch.input_ids.shape[0], device=handle.device)
    cols = rb.subject_positions - offset
    d_model = handle.adapter.edit_weight_out_in(handle.model, layer).shape[0]  # = the site's width
    delta = torch.zeros(d_model, dtype=compute_dtype(handle), device=handle.device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=config.v_lr)
    before: dict[str, torch.Tensor] = {}
    losses: list[float] = []

    def add_delta(_: str, out):
        hidden = out[0] if isinstance(out, tuple) else out
        if "value" not in before:
            before["value"] = as_float(hidden[rows[0], cols[0]].detach()).clone()
        hidden = hidden.index_put((rows, cols), delta.to(hidden.dtype).expand(len(rows), -1),
                                  accumulate=True)
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    for step in range(config.v_num_grad_steps):
        with torch.enable_grad(), trace({"site": site}, edit_output=add_delta):
            logits = logits_of()  # (N + 1, V): target positions, then the KL position
        loss = _total_loss(rb, logits, delta, before, config)
        _check_finite(loss, rb, "loss")
        losses.append(loss.item())
        if loss.item() < config.v_loss_stop or step == config.v_num_grad_steps - 1:
            break
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        _clamp(delta, before["value"], config.clamp_norm_factor)
    delta = delta.detach()
    _check_finite(delta, rb, "value delta")
    return ValueResult(value=before["value"] + delta, value_before=before["value"], delta=delta,
                       losses=tuple(losses))


# --- the two ways to the logits -------------------------------------------------------------------


def _logits_fn(handle: ModelHandle, rb: RequestBatch, layer: int,
               fast: bool) -> Callable[[], torch.Tensor]:
    batch = rb.batch
    if not fast:
        def full() -> torch.Tensor:
            logits = handle.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids, use_cache=False).logits
            return logits[rb.scored]  # (B, T, V) computed, (N + 1, V) used
        return full
    start = rb.first_edited_column
    point = resume_point(handle, batch, layer, start)
    scored = rb.scored[:, start:]

    def resumed() -> torch.Tensor:
        return apply_head(handle, run_from(handle, point)[scored])
    return resumed


# --- the loss, term by term -----------------------------------------------------------------------


def _total_loss(rb: RequestBatch, logits: torch.Tensor, delta: torch.Tensor,
                before: dict[str, torch.Tensor], config: EditConfig) -> torch.Tensor:
    n_targets = rb.target_ids.shape[0]
    log_probs = torch.log_softmax(as_float(logits), dim=-1)
    kl_log_probs = log_probs[n_targets:]  # (1, V)
    if "kl" not in before:  # the first pass runs with delta = 0: the unedited distribution
        before["kl"] = kl_log_probs.detach()
    return (_rewrite_nll(rb, log_probs[:n_targets])
            + config.kl_factor * _kl_term(kl_log_probs, before["kl"])
            + _decay_term(delta, before["value"], config.v_weight_decay))


def _rewrite_nll(rb: RequestBatch, log_probs: torch.Tensor) -> torch.Tensor:
    """Mean over templates of each template's mean target-token NLL; log_probs (N, V)."""
    token_nll = -log_probs.gather(1, rb.target_ids[:, None])[:, 0]  # (N,)
    row_of = rb.scored[: rb.n_rewrite].nonzero()[:, 0]  # (N,) the template of each target token
    per_row = token_nll.new_zeros(rb.n_rewrite).index_add(0, row_of, token_nll)
    counts = torch.bincount(row_of, minlength=rb.n_rewrite).clamp(min=1)
    return (per_row / counts).mean()


def _kl_term(log_probs: torch.Tensor, log_probs_before: torch.Tensor) -> torch.Tensor:
    """KL(p_now || p_before), as ROME's F.kl_div(before, now, log_target=True)."""
    return F.kl_div(log_probs_before, log_probs, log_target=True, reduction="batchmean")


def _decay_term(delta: torch.Tensor, value_before: torch.Tensor, weight: float) -> torch.Tensor:
    return weight * delta.norm() / value_before.norm() ** 2


@torch.no_grad()
def _clamp(delta: torch.Tensor, value_before: torch.Tensor, factor: float) -> None:
    max_norm = factor * value_before.norm()
    norm = delta.norm()
    if norm > max_norm:
        delta.mul_(max_norm / norm)


def _check_finite(tensor: torch.Tensor, rb: RequestBatch, what: str) -> None:
    if not torch.isfinite(tensor).all():
        raise EditError(f"{describe(rb.request)}: the {what} is not finite (NaN or infinity); "
                        f"the weights are unchanged")
