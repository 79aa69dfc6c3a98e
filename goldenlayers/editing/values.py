"""Values: the v* optimisation (docs/method.md, "The shared pieces"), in named steps.

A vector delta is added to the output of a site module (the edit matrix, or for MEMIT the whole
block) at the subject's last token in every row of the request batch. Adam minimises

    loss = mean_templates NLL(target_new)  +  kl_factor KL(p_now || p_before) on the KL prompt
           + v_weight_decay ||delta|| / ||v_before||^2

and after each step ||delta|| is clamped to clamp_norm_factor ||v_before||; v* = v_before + delta,
where v_before is the site's output at the bare prompt (row 0). As in ROME's code, the last step
only measures the loss, and the loop stops early once the loss is below ``v_loss_stop``.

Several requests' deltas are optimised together (``optimise_values``): their rows form one batch,
each delta added only in its own rows, so one forward and backward per step serves them all. Brute
force optimises the same batch at layer after layer; given the engine's ``reuse`` store, the first
step of every layer comes from one shared pass ("the first step, shared by the layers" below).

Two ways to compute the logits give the same delta: ``fast`` (the default) runs the blocks below the
site and the columns before the subject once (models/partial.py) and applies the vocabulary head
only at scored positions; the plain way runs the whole model with full-vocabulary logits at every
position on every step, as reference implementations do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.batches import RequestBatch, prepared_batch
from goldenlayers.editing.cache import EditCache
from goldenlayers.editing.config import EditConfig
from goldenlayers.editing.errors import EditError, describe
from goldenlayers.editing.keys import as_float, compute_dtype
from goldenlayers.models.handle import ModelHandle, apply_head
from goldenlayers.models.hooks import hidden_of, trace, with_hidden
from goldenlayers.models.partial import resume_point, run_from
from goldenlayers.models.tokens import TokenBatch, stack_left_padded
from goldenlayers.models.unchanged import UnchangedWeights


@dataclass(frozen=True)
class ValueResult:
    value: torch.Tensor  # v* (d,) float32 (float64 for a float64 model)
    value_before: torch.Tensor  # v_before (d,): the site's output at the bare prompt's subject
    delta: torch.Tensor  # v* - v_before
    losses: tuple[float, ...]  # the whole loss at each step


def optimise_value(handle: ModelHandle, rb: RequestBatch, layer: int, site: nn.Module,
                   config: EditConfig) -> ValueResult:
    """Optimise delta at ``site`` (a module inside block ``layer``) for one request batch."""
    [result] = optimise_values(handle, [rb], layer, site, config)
    if isinstance(result, EditError):
        raise result
    return result


def optimise_values(handle: ModelHandle, batches: Sequence[RequestBatch], layer: int,
                    site: nn.Module, config: EditConfig, last_loss: bool = True,
                    reuse: UnchangedWeights | None = None) -> list[ValueResult | EditError]:
    """Optimise one delta per request batch, all in one forward and backward per step.

    The rows of all requests form one batch, but each request keeps its own delta (added only in
    its own rows), its own Adam state, clamp, early stop and loss. Rows never interact (attention
    stays within a row), so each delta's gradient is its own request's: the results are those of
    one request at a time, up to float rounding. A request whose loss or delta is not finite gets
    its EditError in its place; the others go on. ``last_loss=False`` leaves out the last step,
    which only measures the loss, for callers that read no losses (brute force): the same values,
    with one loss fewer (and a loss that turns non-finite only there goes unnoticed). ``reuse``:
    work kept while the weights are unchanged (models/unchanged.py), shared with other layers."""
    if not batches:
        return []
    stacked = _stack(handle, batches)
    logits_of = _logits_fn(handle, stacked.batch, stacked.scored, layer, config.fast, reuse)
    offset = stacked.first_edited_column if config.fast else 0
    rows, cols = stacked.subject_positions(offset)
    d_model = handle.adapter.edit_weight_out_in(handle.model, layer).shape[0]  # = the site's width
    deltas = [torch.zeros(d_model, dtype=compute_dtype(handle), device=handle.device,
                          requires_grad=True) for _ in batches]
    optimisers = [torch.optim.Adam([delta], lr=config.v_lr) for delta in deltas]
    before: list[dict[str, torch.Tensor]] = [{} for _ in batches]
    losses: list[list[float]] = [[] for _ in batches]
    results: list[ValueResult | EditError | None] = [None] * len(batches)

    def add_delta(_: str, out):
        if "value" not in before[0]:  # the first pass: delta = 0 everywhere
            for kept, value in zip(before, _subject_values(out, stacked, cols)):
                kept["value"] = value
        return _plus_deltas(out, deltas, stacked, rows, cols)

    first = _first_step(handle, stacked, batches, layer, site, config, reuse)
    for step in range(config.v_num_grad_steps):
        if 0 < step == config.v_num_grad_steps - 1 and not last_loss:
            for request, rb in enumerate(batches):
                if results[request] is None:
                    results[request] = _value_result(rb, deltas[request], before[request],
                                                     losses[request])
            break
        if step == 0 and first is not None:  # the unedited pass, shared with the other layers
            for request, kept in enumerate(before):
                kept.update(value=first.values_before[request], kl=first.kl_before[request])
            step_losses: list[torch.Tensor | None] = list(first.losses)
        else:
            with torch.enable_grad(), trace({"site": site}, edit_output=add_delta):
                logits = logits_of()  # per request: its target positions, then its KL position
            step_losses = [None if results[request] is not None else
                           _total_loss(rb, request_logits, deltas[request], before[request], config)
                           for request, (rb, request_logits)
                           in enumerate(zip(batches, logits.split(stacked.counts)))]
        stepping, total = [], None
        for request, (rb, loss) in enumerate(zip(batches, step_losses)):
            if results[request] is not None:
                continue  # stopped: its delta is frozen and its rows no longer scored
            if not torch.isfinite(loss):
                results[request] = _not_finite(rb, "loss")
                continue
            losses[request].append(loss.item())
            if _last_step(loss, step, config):
                results[request] = _value_result(rb, deltas[request], before[request],
                                                 losses[request])
                continue
            stepping.append(request)
            total = loss if total is None else total + loss
        if total is None:
            break
        for request in stepping:
            optimisers[request].zero_grad()
        if step == 0 and first is not None:
            for request in stepping:
                deltas[request].grad = first.gradients[request].clone()
        else:
            total.backward()
        for request in stepping:
            optimisers[request].step()
            _clamp(deltas[request], before[request]["value"], config.clamp_norm_factor)
    return results  # type: ignore[return-value]  # every request stopped by the last step


def _last_step(loss: torch.Tensor, step: int, config: EditConfig) -> bool:
    """Whether a request's (finite) loss at ``step`` ends its optimisation: early stop, or the last
    step, which only measures the loss (as in ROME's code)."""
    return loss.item() < config.v_loss_stop or step == config.v_num_grad_steps - 1


def values_for_requests(handle: ModelHandle, requests: Sequence[EditRequest], layer: int,
                        site: nn.Module, config: EditConfig, cache: EditCache,
                        last_loss: bool = True,
                        reuse: UnchangedWeights | None = None) -> list[ValueResult | EditError]:
    """Each request's v* at ``site`` on the current weights, all in one batch; a request that
    cannot be edited (no subject in its prompt, an empty target) gets its EditError.
    ``last_loss``, ``reuse``: see ``optimise_values``."""
    batches: list[RequestBatch | EditError] = []
    for request in requests:
        try:
            batches.append(prepared_batch(handle, request, config, cache))
        except EditError as error:
            batches.append(error)
    usable = [rb for rb in batches if isinstance(rb, RequestBatch)]
    values = iter(optimise_values(handle, usable, layer, site, config, last_loss, reuse))
    return [next(values) if isinstance(rb, RequestBatch) else rb for rb in batches]


def _value_result(rb: RequestBatch, delta: torch.Tensor, before: dict[str, torch.Tensor],
                  losses: list[float]) -> ValueResult | EditError:
    delta = delta.detach().clone()
    if not torch.isfinite(delta).all():
        return _not_finite(rb, "value delta")
    return ValueResult(value=before["value"] + delta, value_before=before["value"], delta=delta,
                       losses=tuple(losses))


# --- several requests' rows as one batch ----------------------------------------------------------


@dataclass(frozen=True)
class _Stacked:
    batch: TokenBatch  # every request's rows, in order, left-padded to one width
    scored: torch.Tensor  # (B, T) bool
    row_request: torch.Tensor  # (B,) the request each row belongs to
    first_rows: tuple[int, ...]  # each request's row 0 (its bare prompt)
    counts: list[int]  # each request's number of scored positions

    @property
    def first_edited_column(self) -> int:
        return int(self.batch.subject_last.min())

    def subject_positions(self, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) of each row's subject's last token, columns counted from ``offset``."""
        rows = torch.arange(self.batch.input_ids.shape[0], device=self.batch.input_ids.device)
        return rows, self.batch.subject_last - offset


def _subject_values(out, stacked: _Stacked, cols: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each request's site output at its bare prompt's subject (row 0): its v_before."""
    hidden = hidden_of(out)
    return tuple(as_float(hidden[row, cols[row]].detach()).clone() for row in stacked.first_rows)


def _plus_deltas(out, deltas: Sequence[torch.Tensor], stacked: _Stacked, rows: torch.Tensor,
                 cols: torch.Tensor):
    """The site's output with each request's delta added at the subject of each of its rows."""
    hidden = hidden_of(out)
    added = torch.stack(list(deltas))[stacked.row_request].to(hidden.dtype)
    hidden = hidden.index_put((rows, cols), added, accumulate=True)
    return with_hidden(out, hidden)


def _stack(handle: ModelHandle, batches: Sequence[RequestBatch]) -> _Stacked:
    if len(batches) == 1:  # as it is: no copy, no padding
        rb = batches[0]
        n = rb.batch.input_ids.shape[0]
        return _Stacked(rb.batch, rb.scored, torch.zeros(n, dtype=torch.long, device=handle.device),
                        (0,), [int(rb.scored.sum())])
    batch = stack_left_padded(handle.tokenizer, [rb.batch for rb in batches])
    width = batch.input_ids.shape[1]
    scored = torch.cat([F.pad(rb.scored, (width - rb.scored.shape[1], 0), value=False)
                        for rb in batches])
    sizes = [rb.batch.input_ids.shape[0] for rb in batches]
    row_request = torch.repeat_interleave(torch.arange(len(batches)), torch.tensor(sizes))
    first_rows = tuple(int(sum(sizes[:i])) for i in range(len(sizes)))
    return _Stacked(batch, scored, row_request.to(handle.device), first_rows,
                    [int(rb.scored.sum()) for rb in batches])


# --- the two ways to the logits -------------------------------------------------------------------


def _logits_fn(handle: ModelHandle, batch: TokenBatch, scored: torch.Tensor, layer: int,
               fast: bool, reuse: UnchangedWeights | None) -> Callable[[], torch.Tensor]:
    if not fast:
        def full() -> torch.Tensor:
            logits = handle.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids, use_cache=False).logits
            return logits[scored]  # (B, T, V) computed, (N + 1, V) per request used
        return full
    start = int(batch.subject_last.min())
    point = resume_point(handle, batch, layer, start, reuse)
    scored = scored[:, start:]

    def resumed() -> torch.Tensor:
        return apply_head(handle, run_from(handle, point)[scored])
    return resumed


# --- the first step, shared by the layers ---------------------------------------------------------
#
# Adam's first step starts from delta = 0, so its forward pass is the unedited model's whatever the
# layer, and so are its loss (but for the decay term, which is 0 at delta = 0) and the KL reference;
# only the site whose gradient it needs differs. Brute force and the study edit the same requests
# at layer after layer from unchanged weights: given their UnchangedWeights, one pass from the
# lowest layer asked for, with a zero delta at the site of every block from there up, and one
# backward give each of those layers its first step. The gradient that reaches block l's site goes
# through the same operations as in a pass resumed at l (the zero deltas above it add exactly
# nothing), so it is the same numbers; tests/test_values.py checks that the values are equal.


@dataclass(frozen=True)
class _FirstStep:
    """One layer's first step, per request."""
    losses: tuple[torch.Tensor, ...]
    values_before: tuple[torch.Tensor, ...]
    kl_before: tuple[torch.Tensor, ...]
    gradients: tuple[torch.Tensor, ...]  # of the loss with respect to delta, at delta = 0


@dataclass(frozen=True)
class _SharedFirstStep:
    fits: tuple[torch.Tensor, ...]  # each request's loss but its decay term, detached
    kl_before: tuple[torch.Tensor, ...]
    values_before: dict[int, tuple[torch.Tensor, ...]]  # by layer: each request's v_before
    gradients: dict[int, tuple[torch.Tensor, ...]]  # by layer: each request's delta gradient
    stepping: tuple[int, ...]  # the requests whose losses the backward summed


def _first_step(handle: ModelHandle, stacked: _Stacked, batches: Sequence[RequestBatch],
                layer: int, site: nn.Module, config: EditConfig,
                reuse: UnchangedWeights | None) -> _FirstStep | None:
    """The first step at ``layer`` from the pass shared with the other layers, or None where it
    is not shared: no ``reuse`` store, the plain logits, a layer below the shared pass's, or a
    request that stops or fails at its first step here but not there."""
    if reuse is None or not config.fast:
        return None
    path = _site_path(handle, layer, site)
    if path is None:
        return None
    detail = (path, _scoring_digest(stacked, batches), config.kl_factor, config.v_weight_decay,
              config.v_loss_stop, config.v_num_grad_steps)
    shared = reuse.kept("value first step", handle, stacked.batch, detail,
                        lambda: _shared_first_step(handle, stacked, batches, layer, path, config,
                                                   reuse), capacity=2)
    if layer not in shared.values_before:
        return None
    dtype = compute_dtype(handle)
    losses = tuple(fit + _decay_term(torch.zeros(value.shape[0], dtype=dtype, device=value.device),
                                     value, config.v_weight_decay)
                   for fit, value in zip(shared.fits, shared.values_before[layer]))
    if _stepping(losses, config) != shared.stepping:
        return None
    return _FirstStep(losses, shared.values_before[layer], shared.kl_before,
                      shared.gradients[layer])


def _shared_first_step(handle: ModelHandle, stacked: _Stacked, batches: Sequence[RequestBatch],
                       layer: int, path: str, config: EditConfig,
                       reuse: UnchangedWeights) -> _SharedFirstStep:
    layers = range(layer, handle.num_layers)
    sites = {str(i): handle.adapter.block(handle.model, i).get_submodule(path) for i in layers}
    logits_of = _logits_fn(handle, stacked.batch, stacked.scored, layer, fast=True, reuse=reuse)
    rows, cols = stacked.subject_positions(stacked.first_edited_column)
    d_model = handle.adapter.edit_weight_out_in(handle.model, layer).shape[0]
    deltas = {i: [torch.zeros(d_model, dtype=compute_dtype(handle), device=handle.device,
                              requires_grad=True) for _ in batches] for i in layers}
    values_before: dict[int, tuple[torch.Tensor, ...]] = {}

    def add_zero_delta(name: str, out):
        values_before[int(name)] = _subject_values(out, stacked, cols)
        return _plus_deltas(out, deltas[int(name)], stacked, rows, cols)

    with torch.enable_grad(), trace(sites, edit_output=add_zero_delta):
        logits = logits_of()
    fits, kl_before, losses = [], [], []
    for request, (rb, request_logits) in enumerate(zip(batches, logits.split(stacked.counts))):
        before = {"value": values_before[layer][request]}
        fit = _fit_loss(rb, request_logits, before, config)
        losses.append(fit + _decay_term(deltas[layer][request], before["value"],
                                        config.v_weight_decay))
        fits.append(fit.detach())
        kl_before.append(before["kl"])
    stepping = _stepping(losses, config)
    if stepping:  # summed in the order optimise_values sums them
        total = losses[stepping[0]]
        for request in stepping[1:]:
            total = total + losses[request]
        total.backward()
    gradients = {i: tuple(d.grad if d.grad is not None else torch.zeros_like(d) for d in deltas[i])
                 for i in layers}
    return _SharedFirstStep(tuple(fits), tuple(kl_before), values_before, gradients, stepping)


def _stepping(first_losses: Sequence[torch.Tensor], config: EditConfig) -> tuple[int, ...]:
    """The requests that take an Adam step after their first loss."""
    return tuple(request for request, loss in enumerate(first_losses)
                 if torch.isfinite(loss) and not _last_step(loss, 0, config))


def _site_path(handle: ModelHandle, layer: int, site: nn.Module) -> str | None:
    """The site's name inside block ``layer`` ("" for the block itself), so that the same site can
    be found in every block; None if it is not inside that block."""
    block = handle.adapter.block(handle.model, layer)
    return next((name for name, module in block.named_modules() if module is site), None)


def _scoring_digest(stacked: _Stacked, batches: Sequence[RequestBatch]) -> str:
    """What the loss reads besides the tokens: the scored positions and the targets."""
    digest = hashlib.sha256(stacked.scored.cpu().numpy().tobytes())
    for rb in batches:
        digest.update(f"{rb.n_rewrite}:".encode())
        digest.update(rb.target_ids.cpu().numpy().tobytes())
    return digest.hexdigest()


# --- the loss, term by term -----------------------------------------------------------------------


def _total_loss(rb: RequestBatch, logits: torch.Tensor, delta: torch.Tensor,
                before: dict[str, torch.Tensor], config: EditConfig) -> torch.Tensor:
    return (_fit_loss(rb, logits, before, config)
            + _decay_term(delta, before["value"], config.v_weight_decay))


def _fit_loss(rb: RequestBatch, logits: torch.Tensor, before: dict[str, torch.Tensor],
              config: EditConfig) -> torch.Tensor:
    """The loss without its decay term: the rewrite NLL and the KL term."""
    n_targets = rb.target_ids.shape[0]
    log_probs = torch.log_softmax(as_float(logits), dim=-1)
    kl_log_probs = log_probs[n_targets:]  # (1, V)
    if "kl" not in before:  # the first pass runs with delta = 0: the unedited distribution
        before["kl"] = kl_log_probs.detach()
    return (_rewrite_nll(rb, log_probs[:n_targets])
            + config.kl_factor * _kl_term(kl_log_probs, before["kl"]))


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


def _not_finite(rb: RequestBatch, what: str) -> EditError:
    return EditError(f"{describe(rb.request)}: the {what} is not finite (NaN or infinity); "
                     f"the weights are unchanged")
