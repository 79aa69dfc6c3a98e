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
from goldenlayers.models.tokens import (TokenBatch, encode_prompt_target, pad_rows,
                                        subject_last_token, teacher_forced_row)
from goldenlayers.text import find_subject


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


def check_subject(request: EditRequest) -> None:
    """A clear error when the subject does not occur in the prompt."""
    if not request.subject or find_subject(request.prompt, request.subject) is None:
        raise EditError(f"{describe(request)}: subject {request.subject!r} does not occur in the "
                        f"prompt")


def _rewrite_row(tokenizer, request: EditRequest, prefix: str):
    """(ids, labels, subject column, last prompt column) of prefix + prompt + target[:-1]."""
    text = prefix + request.prompt
    prompt_ids, target_ids = encode_prompt_target(tokenizer, text, request.target_new)
    if not target_ids:
        raise EditError(f"{describe(request)}: the target {request.target_new!r} has no tokens")
    ids, labels = teacher_forced_row(prompt_ids, target_ids)
    subject_column = subject_last_token(tokenizer, text, request.subject, start=len(prefix))
    return ids[:-1], labels[:-1], subject_column, len(prompt_ids) - 1


def _kl_row(tokenizer, request: EditRequest, kl_prompt: str, kl_position: str):
    """(ids, labels, subject column, scored column) of the KL prompt, e.g. "{subject} is a"."""
    text = kl_prompt.replace("{}", request.subject)
    ids = tokenizer(text)["input_ids"]
    subject_column = subject_last_token(tokenizer, text, request.subject, kl_prompt.index("{}"))
    if kl_position == "subject_last":
        ids = ids[: subject_column + 1]  # later tokens cannot change the scored position
    return ids, [-100] * len(ids), subject_column, len(ids) - 1


def request_batch(handle: ModelHandle, request: EditRequest, templates: Sequence[str],
                  kl_prompt: str, kl_position: str) -> RequestBatch:
    tokenizer = handle.tokenizer
    check_subject(request)
    rows = [_rewrite_row(tokenizer, request, prefix) for prefix in templates]
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
    ids, labels, subject, prompt_last = zip(*rows)
    return pad_rows(tokenizer, ids, labels, [column + 1 for column in prompt_last], subject, "left")


def recomputed_columns(tokenizer, request: EditRequest, kl_prompt: str = EditConfig.kl_prompt,
                       kl_position: str = EditConfig.kl_position) -> int:
    """Columns of ``request``'s batch that the value optimisation recomputes at every step: from
    its first subject column to the end, i.e. the longest row's length past its subject column
    (rows are left-padded). The bare prompt row stands for every template row: they share the
    tokens after the subject. A request that cannot be batched counts 0, so ordering never fails;
    its edit reports the error."""
    try:
        check_subject(request)
        rows = [_rewrite_row(tokenizer, request, ""), _kl_row(tokenizer, request, kl_prompt,
                                                             kl_position)]
    except (EditError, ValueError):  # ValueError: a subject the tokens cannot place
        return 0
    return max(len(ids) - subject_column for ids, _, subject_column, _ in rows)


def ordered_for_batching(requests: Sequence[EditRequest], tokenizer,
                         window: int | None = None) -> list[EditRequest]:
    """``requests`` by the columns they recompute (stable): a stacked batch recomputes its widest
    request's columns for every row, so neighbours of similar width waste the fewest. With
    ``window``, only within consecutive windows of that many requests, so that a run stopped part
    way has done the given order's first windows, not the narrowest requests of all."""
    size = window or max(len(requests), 1)
    return [request for start in range(0, len(requests), size)
            for request in sorted(requests[start: start + size],
                                  key=lambda request: recomputed_columns(tokenizer, request))]


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
