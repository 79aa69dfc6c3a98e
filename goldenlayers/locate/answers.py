"""The old answer of each request: the data set's, or the model's own greedy answer where it has none
(WikiRecent). LGA needs it for the old-target gradient, causal tracing for p(answer)."""

from __future__ import annotations

import string

from goldenlayers.models.handle import ModelHandle, greedy_continuations


def first_word(text: str) -> str:
    """The first whitespace-separated word of a continuation, without surrounding punctuation."""
    words = text.split()
    return words[0].strip(string.punctuation + "“”‘’") if words else ""


def old_answers(handle: ModelHandle, requests, max_new_tokens: int) -> tuple[list[str], list[str]]:
    """Each request's old answer: the data set's, else the first word of the model's greedy
    continuation of the prompt (empty when the model continues with no word). Returns notes too."""
    missing = [i for i, r in enumerate(requests) if r.target_old is None]
    answers = [r.target_old or "" for r in requests]
    if not missing:
        return answers, []
    texts = greedy_continuations(handle, [requests[i].prompt for i in missing], max_new_tokens)
    for i, text in zip(missing, texts):
        answers[i] = first_word(text)
    note = (f"{len(missing)} of {len(requests)} requests have no old answer: used the first word of "
            f"the model's greedy {max_new_tokens}-token continuation")
    return answers, [note]
