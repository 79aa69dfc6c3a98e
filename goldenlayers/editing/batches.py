"""One request's token batch: its prompt in every context template with the new target, plus the
KL prompt, left-padded, with the columns the value optimisation touches and scores.

Left padding lines the rows up at their ends. Every template row ends with the same tokens (the
rest of the prompt and the target), so their subject tokens fall in nearly the same column and
the columns before it never change during the optimisation (models/partial.py skips them).
The last target token is left out: it predicts nothing that is scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.cache import EditCache
from goldenlayers.editing.config import EditConfig
from goldenlayers.editing.errors import EditError, describe
from goldenlayers.editing.templates import context_templates
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.tokens import TokenBatch, encode_prompt_target


@dataclass(frozen=True)
class RequestBatch:
    request: EditRequest
    batch: TokenBatch  # rows 0..n_rewrite-1: template + prompt + target; last row: the KL prompt
    n_rewrite: int  # row 0 is the bare prompt (template "")
    scored: torch.Tensor  # (B, T) bool: target-predicting positions, then the KL row's position
    target_ids: torch.Tensor  # (N,) the target token each scored rewrite position predicts

    @property
    def subject_positions(self) -> torch.Tensor:  # (B,) column of the subject's last token
        return self.batch.subject_last

    @property
    def first_edited_column(self) -> int:
        return int(self.subject_positions.min())


def subject_end(request: EditRequest) -> int:
    """Character index just after the subject in the prompt; a clear error when it is absent."""
    prompt, subject = request.prompt, request.subject
    start = prompt.find(subject)
    if start < 0:
        start = prompt.lower().find(subject.lower())
    if not subject or start < 0:
        raise EditError(f"{describe(request)}: subject {subject!r} does not occur in the prompt")
    return start + len(subject)


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def _rewrite_row(tokenizer, request: EditRequest, prefix: str, end: int):
    """(ids, labels, subject column) of prefix + prompt + target[:-1]."""
    text = prefix + request.prompt
    prompt_ids, target_ids = encode_prompt_target(tokenizer, text, request.target_new)
    if not target_ids:
        raise EditError(f"{describe(request)}: the target {request.target_new!r} has no tokens")
    ids = prompt_ids + target_ids[:-1]
    labels = [-100] * len(ids)
    for j, token in enumerate(target_ids):
        labels[len(prompt_ids) - 1 + j] = token
    subject_column = _token_count(tokenizer, text[: len(prefix) + end].rstrip()) - 1
    return ids, labels, subject_column, len(prompt_ids) - 1


def _kl_row(tokenizer, request: EditRequest, kl_prompt: str, kl_position: str):
    """(ids, labels, subject column, scored column) of the KL prompt, e.g. "{subject} is a"."""
    text = kl_prompt.replace("{}", request.subject)
    ids = tokenizer(text)["input_ids"]
    end = kl_prompt.index("{}") + len(request.subject)
    subject_column = _token_count(tokenizer, text[:end].rstrip()) - 1
    if kl_position == "subject_last":
        ids = ids[: subject_column + 1]  # later tokens cannot change the scored position
    return ids, [-100] * len(ids), subject_column, len(ids) - 1


def request_batch(handle: ModelHandle, request: EditRequest, templates: Sequence[str],
                  kl_prompt: str, kl_position: str) -> RequestBatch:
    tokenizer = handle.tokenizer
    end = subject_end(request)
    rows = [_rewrite_row(tokenizer, request, prefix, end) for prefix in templates]
    kl_row = _kl_row(tokenizer, request, kl_prompt, kl_position)
    rows.append(kl_row)
    batch = _left_pad(tokenizer, rows)
    scored = batch.labels != -100
    target_ids = batch.labels[scored]
    scored[-1, batch.prompt_last[-1]] = True  # the KL row's scored column (its last)
    return RequestBatch(request=request, batch=batch.to(handle.device), n_rewrite=len(templates),
                        scored=scored.to(handle.device), target_ids=target_ids.to(handle.device))


def _left_pad(tokenizer, rows) -> TokenBatch:
    """rows: (ids, labels, subject column, last prompt column) -> a left-padded batch."""
    width = max(len(row[0]) for row in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    subject, prompt_last = [], []
    for i, (ids, row_labels, subject_column, prompt_column) in enumerate(rows):
        offset = width - len(ids)
        input_ids[i, offset:] = torch.tensor(ids)
        attention_mask[i, offset:] = 1
        labels[i, offset:] = torch.tensor(row_labels)
        subject.append(offset + subject_column)
        prompt_last.append(offset + prompt_column)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return TokenBatch(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      labels=labels, subject_last=torch.tensor(subject),
                      prompt_last=torch.tensor(prompt_last))


def prepared_batch(handle: ModelHandle, request: EditRequest, config: EditConfig,
                   cache: EditCache) -> RequestBatch:
    """The request's batch in the model's (cached) context templates, itself cached: brute-force
    search edits one request at every layer, and tokenising it once is enough."""
    templates = context_templates(handle, config.n_context_templates,
                                  config.context_template_length, config.template_seed, cache)
    key = (handle.fingerprint, str(handle.device), getattr(request, "case_id", ""), request.prompt,
           request.subject, request.target_new, templates, config.kl_prompt, config.kl_position)
    if key in cache.batches:
        return cache.batches[key]
    built = request_batch(handle, request, templates, config.kl_prompt, config.kl_position)
    return cache.remember_batch(key, built)
