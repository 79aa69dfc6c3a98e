"""Re-running only the top of a decoder, many times over the same batch.

An intervention at block ``layer`` and column ``start`` (the ROME value optimisation adds a vector
at the subject's last token) cannot change anything below that block, nor any column before
``start``. ``resume_point`` runs those parts once: the columns before ``start`` go through the whole
decoder into a key/value cache, and the remaining columns go through the blocks below ``layer``.
It records how each block from ``layer`` up was called (attention masks, rotary embeddings, the
cache). ``run_from`` then replays just those blocks on just those columns, so hooks placed on them
with ``trace`` fire as in a full forward pass, and the result equals the full pass's up to float
rounding. Nothing here knows an architecture: the model's own forward builds every argument.

The pass that ``resume_point`` records runs every block, so one pass can serve every layer: given
an ``UnchangedWeights`` (models/unchanged.py) as ``reuse``, it records every block once per batch.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
from torch import nn

from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.hooks import hidden_of, trace
from goldenlayers.models.tokens import TokenBatch
from goldenlayers.models.unchanged import UnchangedWeights


@dataclass
class ResumePoint:
    layer: int
    start: int  # first column recomputed; earlier columns live in ``cache``
    hidden: torch.Tensor  # (B, T - start, d_model): input of block ``layer`` at those columns
    calls: list[tuple[nn.Module, tuple, dict]]  # blocks layer..L-1, each with its recorded arguments
    cache: object | None  # keys and values of the columns before ``start``, never modified


def _base(handle: ModelHandle) -> nn.Module:
    return handle.model.get_submodule(handle.adapter.base_model)


def _cache_keyword(base: nn.Module) -> str:
    """The forward argument that takes a key/value cache: transformers 5.x renamed
    ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _prefix_cache(handle: ModelHandle, batch: TokenBatch, start: int):
    """Keys and values of columns [0, start) for every block (a transformers cache), or None."""
    if start == 0:
        return None
    base = _base(handle)
    out = base(input_ids=batch.input_ids[:, :start], attention_mask=batch.attention_mask[:, :start],
               position_ids=batch.position_ids[:, :start], use_cache=True)
    return out[_cache_keyword(base)]


@torch.no_grad()
def resume_point(handle: ModelHandle, batch: TokenBatch, layer: int, start: int = 0,
                 reuse: UnchangedWeights | None = None) -> ResumePoint:
    """Run everything that cannot depend on block ``layer`` at columns >= ``start``, once (or take
    it from ``reuse``, where one pass of every block serves every layer)."""
    handle.adapter.check_layer(handle.model, layer)
    if not 0 <= start < batch.input_ids.shape[1]:
        raise ValueError(f"start column {start} is outside the batch's {batch.input_ids.shape[1]} columns")
    if reuse is None:
        return _record(handle, batch, start, first_block=layer).at(layer)
    # brute force goes layer by layer through one batch of requests, then the next: keep two
    return reuse.kept("pass", handle, batch, start,
                          lambda: _record(handle, batch, start, first_block=0), capacity=2).at(layer)


@dataclass(frozen=True)
class _RecordedPass:
    start: int
    first_block: int
    calls: list[tuple[nn.Module, tuple, dict]]  # blocks first_block..L-1 with their arguments
    cache: object | None

    def at(self, layer: int) -> ResumePoint:
        calls = self.calls[layer - self.first_block:]
        args, kwargs = calls[0][1], calls[0][2]
        hidden = args[0] if args else kwargs["hidden_states"]
        return ResumePoint(layer=layer, start=self.start, hidden=hidden, calls=calls,
                           cache=self.cache)


def _record(handle: ModelHandle, batch: TokenBatch, start: int, first_block: int) -> _RecordedPass:
    """One pass over the batch (the columns before ``start`` into a cache first), recording how
    blocks ``first_block``..L-1 were called."""
    pristine = _prefix_cache(handle, batch, start)
    cache = copy.deepcopy(pristine)  # the recording pass appends to it; ``pristine`` stays as is
    blocks = {str(i): handle.adapter.block(handle.model, i)
              for i in range(first_block, handle.num_layers)}
    base = _base(handle)
    with trace(blocks, capture_calls=True) as record:
        base(input_ids=batch.input_ids[:, start:], attention_mask=batch.attention_mask,
             position_ids=batch.position_ids[:, start:], use_cache=cache is not None,
             **{_cache_keyword(base): cache})
    calls = [(blocks[name], *_swap_cache(record.calls[name], cache, pristine)) for name in blocks]
    return _RecordedPass(start, first_block, calls, pristine)


def _swap_cache(call: tuple[tuple, dict], old, new) -> tuple[tuple, dict]:
    """The call's arguments with the cache object ``old`` replaced by ``new`` (matched by identity)."""
    args, kwargs = call
    if old is None:
        return args, kwargs
    args = tuple(new if a is old else a for a in args)
    kwargs = {k: new if v is old else v for k, v in kwargs.items()}
    return args, kwargs


def run_from(handle: ModelHandle, point: ResumePoint) -> torch.Tensor:
    """Final-normed hidden states (B, T - start, d_model) of the recorded batch, recomputed from
    block ``point.layer`` up. Differentiable; hooks on those blocks (or inside them) fire."""
    cache = copy.deepcopy(point.cache)  # the blocks append this pass's keys to a copy
    hidden = point.hidden
    for block, args, kwargs in point.calls:
        args, kwargs = _swap_cache((args, kwargs), point.cache, cache)
        if args:
            out = block(hidden, *args[1:], **kwargs)
        else:
            out = block(**{**kwargs, "hidden_states": hidden})
        hidden = hidden_of(out)
    return handle.model.get_submodule(handle.adapter.final_norm)(hidden)
