"""Turning prompts and targets into padded token batches, and the positions a loss needs.

Every teacher-forced computation (ROME's value loss, LGA's gradients, the accuracy metrics) uses
``teacher_forced_batch``: prompt + target in one sequence, with ``predicts_target`` marking the
positions whose next-token logits predict a target token. Only those positions go through the
vocabulary head, which on small models costs more than the whole transformer.

The small token facts everything else needs are written once here: where the subject's tokens are
(``subject_last_token``, ``subject_token_span``), which id pads (``pad_token_id``), how a prompt and
its target are tokenized and labelled (``encode_prompt_target``, ``teacher_forced_row``) and how
rows become one padded batch (``pad_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from goldenlayers.errors import InputError
from goldenlayers.text import find_subject

EXACT_COUNT_CHARS = 1 << 18  # longer texts: the token count is estimated from this many characters


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T), 1 for real tokens
    position_ids: torch.Tensor  # (B, T), counted over real tokens only, so padding side is moot
    labels: torch.Tensor  # (B, T): next token id where it is a target token, else -100
    subject_last: torch.Tensor  # (B,): position of the subject's last token, -1 when not given
    prompt_last: torch.Tensor  # (B,): position of the prompt's last token

    @property
    def predicts_target(self) -> torch.Tensor:  # (B, T) bool
        return self.labels != -100

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(*(t.to(device) for t in (
            self.input_ids, self.attention_mask, self.position_ids, self.labels,
            self.subject_last, self.prompt_last)))


def target_text(target: str) -> str:
    """Targets follow the prompt after one space, as in ROME and EasyEdit."""
    return target if target.startswith(" ") else " " + target


def encode_prompt_target(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt (with any BOS the tokenizer adds) and of the target after it.

    Tokenizing the concatenation keeps the target's tokens exactly as the model would see them in
    running text; where the prompt's tokens are not a prefix of the whole (rare merges across the
    boundary), the target is tokenized on its own.
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + target_text(target))["input_ids"]
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        return prompt_ids, full_ids[len(prompt_ids):]
    return prompt_ids, tokenizer(target_text(target), add_special_tokens=False)["input_ids"]


def pad_token_id(tokenizer) -> int:
    """The id to pad with: the tokenizer's pad token, else its end-of-sequence token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad token nor an end-of-sequence token")
    return pad


def _subject_chars(prompt: str, subject: str, start: int) -> tuple[int, int]:
    span = find_subject(prompt, subject, start)
    if span is None:
        raise ValueError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    return span


def _token_count(tokenizer, text: str) -> int:
    """Tokens of ``text`` with trailing spaces dropped (they belong to the next word's token);
    counts a BOS where the tokenizer adds one."""
    return len(tokenizer(text.rstrip())["input_ids"])


def subject_last_token(tokenizer, prompt: str, subject: str, start: int = 0) -> int:
    """Index, in the tokenized prompt, of the last token of the subject's first occurrence at or
    after character ``start`` (pass the length of a prefix the subject may also appear in)."""
    _, end = _subject_chars(prompt, subject, start)
    return _token_count(tokenizer, prompt[:end]) - 1


def subject_token_span(tokenizer, prompt: str, subject: str, start: int = 0) -> tuple[int, int]:
    """[first, last + 1) token positions of the subject's first occurrence at or after ``start``."""
    begin, end = _subject_chars(prompt, subject, start)
    last = _token_count(tokenizer, prompt[:end]) - 1
    return min(_token_count(tokenizer, prompt[:begin]), last), last + 1


def teacher_forced_row(prompt_ids: list[int], target_ids: list[int]) -> tuple[list[int], list[int]]:
    """prompt + target token ids and their labels: position p is labelled with token p + 1 where
    that is a target token (the last prompt position predicts the first target token), else -100."""
    ids = prompt_ids + target_ids
    labels = [-100] * len(ids)
    for j, token in enumerate(target_ids):
        labels[len(prompt_ids) - 1 + j] = token
    return ids, labels


def teacher_forced_batch(
    tokenizer,
    prompts: Sequence[str],
    targets: Sequence[str] | None = None,
    *,
    subjects: Sequence[str] | None = None,
    padding_side: str = "right",
) -> TokenBatch:
    """Pad prompt (+ target) sequences into one batch. Without targets, labels are all -100."""
    if targets is not None and len(targets) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    rows, labels, prompt_lengths = [], [], []
    for i, prompt in enumerate(prompts):
        if targets is None:
            prompt_ids, target_ids = tokenizer(prompt)["input_ids"], []
        else:
            prompt_ids, target_ids = encode_prompt_target(tokenizer, prompt, targets[i])
        ids, row_labels = teacher_forced_row(prompt_ids, target_ids)
        rows.append(ids)
        labels.append(row_labels)
        prompt_lengths.append(len(prompt_ids))
    subject_last = [
        subject_last_token(tokenizer, p, s) for p, s in zip(prompts, subjects)
    ] if subjects is not None else [-1] * len(prompts)
    return pad_rows(tokenizer, rows, labels, prompt_lengths, subject_last, padding_side)


def pad_rows(tokenizer, rows: Sequence[list[int]], labels: Sequence[list[int]],
             prompt_lengths: Sequence[int], subject_last: Sequence[int],
             padding_side: str = "right") -> TokenBatch:
    """Token rows, with their labels, prompt lengths and subject-last positions (-1: none), as one
    padded batch; position ids count real tokens only, so the padding side does not matter."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    width = max(len(r) for r in rows)
    pad_id = pad_token_id(tokenizer)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    label_tensor = torch.full((batch, width), -100, dtype=torch.long)
    offsets = []
    for i, (ids, row_labels) in enumerate(zip(rows, labels)):
        offset = width - len(ids) if padding_side == "left" else 0
        offsets.append(offset)
        input_ids[i, offset: offset + len(ids)] = torch.tensor(ids)
        attention_mask[i, offset: offset + len(ids)] = 1
        label_tensor[i, offset: offset + len(ids)] = torch.tensor(row_labels)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    offsets_t = torch.tensor(offsets)
    subject = torch.tensor(subject_last)
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        labels=label_tensor,
        subject_last=torch.where(subject >= 0, subject + offsets_t, subject),
        prompt_last=torch.tensor(prompt_lengths) - 1 + offsets_t,
    )


# --- prompts that do not fit the model's context ----------------------------------------------------


def context_length(model, tokenizer=None) -> int | None:
    """The most positions the model takes (its config's), else the tokenizer's limit, else None."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 1_000_000_000 else None


def count_tokens(tokenizer, text: str) -> tuple[int, bool]:
    """(token count, exact?). Texts over ``EXACT_COUNT_CHARS`` are estimated from their start, so
    a 5 MB prompt costs a fraction of a second, not minutes."""
    if len(text) <= EXACT_COUNT_CHARS:
        return len(tokenizer(text)["input_ids"]), True
    head = len(tokenizer(text[:EXACT_COUNT_CHARS])["input_ids"])
    return round(head * len(text) / EXACT_COUNT_CHARS), False


def _scored_texts(request) -> list[tuple[str, str]]:
    """(what, prompt + answer) of every sequence a request's edit or metrics run through the model."""
    def joined(prompt: str, answer: str | None) -> str:
        return prompt + target_text(answer) if answer else prompt

    texts = [("prompt", joined(request.prompt, request.target_new))]
    texts += [(f"rephrase {i}", joined(p, request.target_new))
              for i, p in enumerate(request.rephrase_prompts)]
    for kind in ("locality", "portability"):
        texts += [(f"{kind} {i}", joined(pair.prompt, pair.answer))
                  for i, pair in enumerate(getattr(request, kind))]
    return texts


def check_fits_context(handle, requests) -> None:
    """``InputError`` naming the first request (case id and which prompt) whose text, with its
    answer, has more tokens than the model's context. Checked before any work: such a prompt
    would otherwise run for ages or fail deep inside the model."""
    limit = context_length(handle.model, handle.tokenizer)
    if limit is None:
        return
    for request in requests:
        for what, text in _scored_texts(request):
            if len(text.encode("utf-8")) + 4 <= limit:  # at most one token per byte, plus specials
                continue
            count, exact = count_tokens(handle.tokenizer, text)
            if count > limit:
                size = f"{count:,} tokens" if exact else f"about {count:,} tokens ({len(text):,} characters)"
                raise InputError(f"the {what} with its answer is {size}, longer than the "
                                 f"{limit:,}-token context of {handle.name}; shorten it",
                                 source=f"request {request.case_id}")


def check_batch_fits(input_ids: torch.Tensor, limit: int | None, name: str) -> None:
    """The last line of defence for batches built outside ``check_fits_context``."""
    if limit is not None and input_ids.shape[-1] > limit:
        raise InputError(f"a sequence of {input_ids.shape[-1]:,} tokens does not fit the "
                         f"{limit:,}-token context of {name}; shorten the prompt")


def stack_left_padded(tokenizer, batches: Sequence[TokenBatch]) -> TokenBatch:
    """Left-padded batches as one: each is padded further on the left to the widest, so every row
    keeps its tokens, positions and labels, and its columns shift by the added padding."""
    width = max(b.input_ids.shape[1] for b in batches)
    pad_id = pad_token_id(tokenizer)

    def widen(tensor: torch.Tensor, fill: int, added: int) -> torch.Tensor:
        return torch.nn.functional.pad(tensor, (added, 0), value=fill)

    parts = []
    for b in batches:
        added = width - b.input_ids.shape[1]
        parts.append(TokenBatch(widen(b.input_ids, pad_id, added), widen(b.attention_mask, 0, added),
                                widen(b.position_ids, 0, added), widen(b.labels, -100, added),
                                torch.where(b.subject_last >= 0, b.subject_last + added,
                                            b.subject_last),
                                b.prompt_last + added))
    return TokenBatch(*(torch.cat(tensors) for tensors in zip(
        *((p.input_ids, p.attention_mask, p.position_ids, p.labels, p.subject_last, p.prompt_last)
          for p in parts))))
