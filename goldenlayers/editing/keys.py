"""Keys: what the edit matrix reads at the subject's last token (docs/method.md, "The editors").

k* is the mean over context templates of the edit matrix's input there. ROME's original code also
uses the key of the bare prompt (template "", row 0); R-ROME uses k* everywhere. MEMIT's and EMMET's
reference code (EasyEdit's compute_ks) averages within each kind of context first (the bare prompt;
the sampled prefixes) and then over the kinds: 1/2 bare + 1/2 mean of the prefixed (``kinds_mean_key``).
"""

from __future__ import annotations

import torch
from torch import nn

from goldenlayers.editing.batches import RequestBatch
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.hooks import hidden_of, trace
from goldenlayers.models.unchanged import UnchangedWeights


def as_float(tensor: torch.Tensor) -> torch.Tensor:
    """float32, or float64 where it already is (float64 models keep full precision throughout)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def compute_dtype(handle: ModelHandle) -> torch.dtype:
    """The dtype the editors compute vectors and factors in: float64 for a float64 model, else float32."""
    return torch.float64 if next(handle.model.parameters()).dtype == torch.float64 else torch.float32


def at_subject(handle: ModelHandle, rb: RequestBatch, module: nn.Module, *, inputs: bool,
               rows: int | None = None) -> torch.Tensor:
    """The input (or output) of ``module`` at the subject's last token of the first ``rows`` rows
    (default: every template row), as float32 or float64 (rows, d). The forward stops after ``module``."""
    return _at_subject_of(handle, rb, {"site": module}, inputs=inputs, rows=rows,
                          stop_after="site")["site"]


@torch.no_grad()
def _at_subject_of(handle: ModelHandle, rb: RequestBatch, modules: dict[str, nn.Module], *,
                   inputs: bool, rows: int | None = None,
                   stop_after: str | None = None) -> dict[str, torch.Tensor]:
    """``at_subject`` for several modules in one forward."""
    rows = rb.n_rewrite if rows is None else rows
    batch = rb.batch
    with trace(modules, capture_inputs=inputs, capture_outputs=not inputs,
               stop_after=stop_after) as record:
        handle.model.get_submodule(handle.adapter.base_model)(
            input_ids=batch.input_ids[:rows], attention_mask=batch.attention_mask[:rows],
            position_ids=batch.position_ids[:rows], use_cache=False)
    index = torch.arange(rows, device=batch.input_ids.device)
    found = {}
    for name in modules:
        captured = record.inputs[name] if inputs else record.outputs[name]
        found[name] = as_float(hidden_of(captured)[index, rb.subject_positions[:rows]])
    return found


def template_keys(handle: ModelHandle, rb: RequestBatch, layer: int,
                  reuse: UnchangedWeights | None = None) -> torch.Tensor:
    """(n_templates, d_in): the edit matrix's input at the subject in every template; row 0 = bare.
    With ``reuse``, one pass gives every layer's (the same tensors), kept for the next layers."""
    if reuse is None:
        return at_subject(handle, rb, handle.adapter.edit_module(handle.model, layer), inputs=True)
    every = reuse.kept("template keys", handle, rb.batch, (rb.n_rewrite, _positions(rb)),
                           lambda: _template_keys_at_every_layer(handle, rb), capacity=64)
    return every[layer]


def _positions(rb: RequestBatch) -> tuple[int, ...]:
    return tuple(int(p) for p in rb.subject_positions[: rb.n_rewrite])


def _template_keys_at_every_layer(handle: ModelHandle, rb: RequestBatch) -> list[torch.Tensor]:
    modules = {str(layer): handle.adapter.edit_module(handle.model, layer)
               for layer in range(handle.num_layers)}
    return list(_at_subject_of(handle, rb, modules, inputs=True).values())


def mean_key(keys: torch.Tensor) -> torch.Tensor:
    """k* (d_in,) from the template keys (n_templates, d_in)."""
    return keys.mean(0)


def kinds_mean_key(keys: torch.Tensor) -> torch.Tensor:
    """EasyEdit's compute_ks key (d_in,): the mean of the bare prompt's key (row 0) and the mean of
    the prefixed ones (rows 1..), each kind weighing the same; the bare key when there are no others."""
    if len(keys) == 1:
        return keys[0]
    return (keys[0] + keys[1:].mean(0)) / 2


def edit_output(handle: ModelHandle, layer: int, keys: torch.Tensor) -> torch.Tensor:
    """What the edit matrix outputs now for keys (d_in,) or (d_in, E): W k (+ bias), float32
    (float64 for a float64 model)."""
    weight = as_float(handle.adapter.edit_weight_out_in(handle.model, layer))
    value = weight @ keys.to(weight.device, weight.dtype)  # (d_out,) or (d_out, E)
    bias = handle.adapter.edit_bias(handle.model, layer)
    if bias is None:
        return value
    bias = as_float(bias)
    return value + (bias if keys.ndim == 1 else bias[:, None])
