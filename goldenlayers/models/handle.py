"""A loaded model with its tokenizer and adapter, and the forward passes everything else uses."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F

from goldenlayers.models.adapters import ArchitectureAdapter
from goldenlayers.models.tokens import (TokenBatch, check_batch_fits, context_length,
                                        pad_token_id, teacher_forced_batch)


# Where a model was loaded from, and how, says nothing about which weights it has: a saved and
# reloaded copy must keep its fingerprint.
_CONFIG_KEYS_NOT_OF_THE_WEIGHTS = {"_name_or_path", "transformers_version", "dtype", "torch_dtype",
                                   "architectures", "use_cache"}


@dataclass
class ModelHandle:
    model: torch.nn.Module
    tokenizer: object
    adapter: ArchitectureAdapter
    name: str
    source: str = ""  # where the weights came from, in words
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_layers(self) -> int:
        return self.adapter.num_layers(self.model)

    @cached_property
    def fingerprint(self) -> str:
        """Identifies these weights: config plus samples of the embedding and first/last edit matrix.

        Computed once at load time, before any edit, so caches keyed by it survive in-place edits.
        """
        config = {key: value for key, value in self.model.config.to_dict().items()
                  if key not in _CONFIG_KEYS_NOT_OF_THE_WEIGHTS}
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
        digest.update(weights_digest(self).encode())
        return digest.hexdigest()[:16]

    def batch(self, prompts, targets=None, *, subjects=None, padding_side="right") -> TokenBatch:
        batch = teacher_forced_batch(self.tokenizer, prompts, targets, subjects=subjects,
                                     padding_side=padding_side)
        check_batch_fits(batch.input_ids, context_length(self.model, self.tokenizer), self.name)
        return batch.to(self.device)


def weights_digest(handle: ModelHandle) -> str:
    """The weights as they are now, from shapes and samples of the embedding and the first and last
    edit matrix (cheap: it reads 8 rows of each)."""
    adapter, model = handle.adapter, handle.model
    samples = [model.get_submodule(adapter.embedding).weight]
    samples += [adapter.edit_weight_out_in(model, layer) for layer in (0, handle.num_layers - 1)]
    digest = hashlib.sha256()
    for tensor in samples:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor[:8].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def hidden_states(handle: ModelHandle, batch: TokenBatch) -> torch.Tensor:
    """Final-normed hidden states (B, T, d_model): the decoder stack without the vocabulary head."""
    base = handle.model.get_submodule(handle.adapter.base_model)
    out = base(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
               position_ids=batch.position_ids, use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def apply_head(handle: ModelHandle, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits (..., V) from final-normed hidden states, with Gemma's soft-capping."""
    logits = handle.model.get_submodule(handle.adapter.head)(hidden)
    cap = getattr(handle.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def logits_at(handle: ModelHandle, batch: TokenBatch, positions: torch.Tensor) -> torch.Tensor:
    """Logits (N, V) at the True entries of the (B, T) mask ``positions``, in row-major order."""
    return apply_head(handle, hidden_states(handle, batch)[positions])


def target_nll(handle: ModelHandle, batch: TokenBatch) -> torch.Tensor:
    """Per-row teacher-forced cross-entropy of the target tokens, mean over each row's tokens (B,)."""
    mask = batch.predicts_target
    logits = logits_at(handle, batch, mask)  # (N, V)
    token_nll = F.cross_entropy(logits.float(), batch.labels[mask], reduction="none")  # (N,)
    rows = mask.nonzero()[:, 0]
    per_row = torch.zeros(mask.shape[0], device=logits.device).index_add(0, rows, token_nll)
    return per_row / mask.sum(-1).clamp(min=1)


def last_prompt_logits(handle: ModelHandle, batch: TokenBatch) -> torch.Tensor:
    """Logits (B, V) at each row's last prompt token: the next-token distribution after the prompt."""
    mask = torch.zeros_like(batch.attention_mask, dtype=torch.bool)
    mask[torch.arange(mask.shape[0], device=mask.device), batch.prompt_last] = True
    return logits_at(handle, batch, mask)


@torch.no_grad()
def greedy_continuations(handle: ModelHandle, prompts: list[str], max_new_tokens: int = 8,
                         batch_size: int = 16) -> list[str]:
    """Greedy decoding of each prompt, returning only the new text."""
    tokenizer = handle.tokenizer
    texts = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start: start + batch_size]
        batch = handle.batch(chunk, padding_side="left")
        pad_id = pad_token_id(tokenizer)
        out = handle.model.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask,
            max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
        )
        new_tokens = out[:, batch.input_ids.shape[1]:]
        texts.extend(tokenizer.decode(row, skip_special_tokens=True) for row in new_tokens)
    return texts
