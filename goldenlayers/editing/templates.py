"""Context templates: short texts sampled from the model itself, put before an edit's prompt.

ROME averages the key over several contexts and optimises the value in all of them, so the edit
generalises beyond the exact prompt. Like EasyEdit, each sampled text starts from one of a few
common words and is drawn with top-k sampling (k = 5). Sampling is seeded and the result cached per
model fingerprint in an ``EditCache``, so every edit of one model sees the same templates.

A template here is a prefix string: "" is the bare prompt (always first), "The river runs. " is a
sampled one. Prefixes are joined to prompts by concatenation, never ``str.format``, so braces in a
prompt are harmless.
"""

from __future__ import annotations

import logging

import torch

from goldenlayers.editing.cache import EditCache
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.tokens import pad_token_id

log = logging.getLogger(__name__)

TEMPLATE_STARTS = ("The", "Therefore", "Because", "I", "You")
TOP_K = 5


def context_templates(handle: ModelHandle, n: int, length: int, seed: int = 0,
                      cache: EditCache | None = None) -> tuple[str, ...]:
    """("", prefix_1, ..., prefix_n): the bare prompt first, then ``n`` sampled prefixes of about
    ``length`` tokens each (the start word included, as in ROME)."""
    key = (handle.fingerprint, n, length, seed)
    if cache is not None and key in cache.templates:
        return cache.templates[key]
    templates = ("",) + sample_prefixes(handle, n, length, seed)
    log.info("sampled %d context templates for %s: %s", n, handle.name, templates[1:])
    if cache is not None:
        cache.templates[key] = templates
    return templates


@torch.no_grad()
def sample_prefixes(handle: ModelHandle, n: int, length: int, seed: int) -> tuple[str, ...]:
    starts = [TEMPLATE_STARTS[i % len(TEMPLATE_STARTS)] for i in range(n)]
    batch = handle.batch(starts, padding_side="left")
    tokenizer = handle.tokenizer
    pad_id = pad_token_id(tokenizer)
    devices = [handle.device] if handle.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seeded without disturbing the caller's generator
        torch.manual_seed(seed)
        out = handle.model.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, do_sample=True,
            top_k=TOP_K, top_p=1.0, temperature=1.0, max_new_tokens=max(1, length - 1),
            pad_token_id=pad_id,
        )
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    return tuple(as_prefix(text) for text in texts)


def as_prefix(text: str) -> str:
    """Sampled text as a prefix: braces and line breaks removed (as ROME does), then '. '."""
    words = text.replace("{", " ").replace("}", " ").split()
    return " ".join(words) + ". "
