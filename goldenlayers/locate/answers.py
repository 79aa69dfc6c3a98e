"""The old answer of each request: the data set's, or the model's own greedy answer where it has none
(WikiRecent). LGA needs it for the old-target gradient, causal tracing for p(answer).

LGA can also read every old answer from the model (``source="greedy"``): the gradient of what the
model actually says, whatever the data set calls the truth.
"""

from __future__ import annotations

import string

from goldenlayers.models.handle import ModelHandle, greedy_continuations

# the data set's target_old (the model's greedy answer where it has none), or always the greedy one
OLD_ANSWER_SOURCES = ("dataset", "greedy")


def first_word(text: str) -> str:
    """The first whitespace-separated word of a continuation, without surrounding punctuation."""
    words = text.split()
    return words[0].strip(string.punctuation + "“”‘’") if words else ""


def greedy_answers(handle: ModelHandle, requests, max_new_tokens: int) -> list[str]:
    """The first word of the model's greedy continuation of each prompt ("" when there is none)."""
    texts = greedy_continuations(handle, [r.prompt for r in requests], max_new_tokens)
    return [first_word(text) for text in texts]


def old_answers(handle: ModelHandle, requests, max_new_tokens: int, source: str = "dataset",
                greedy: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Each request's old answer, and notes that say where answers came from the model.

    ``source="dataset"``: the data set's, else the first word of the model's greedy continuation of
    the prompt (empty when the model continues with no word). ``source="greedy"``: always the
    model's. ``greedy``: the greedy answers of all requests when already computed (reused as is).
    """
    if source not in OLD_ANSWER_SOURCES:
        raise ValueError(f"source must be one of {', '.join(OLD_ANSWER_SOURCES)}, not {source!r}")
    missing = [i for i, r in enumerate(requests) if source == "greedy" or r.target_old is None]
    answers = [r.target_old or "" for r in requests]
    if not missing:
        return answers, []
    if greedy is None:
        model_answers = greedy_answers(handle, [requests[i] for i in missing], max_new_tokens)
    else:
        model_answers = [greedy[i] for i in missing]
    for i, answer in zip(missing, model_answers):
        answers[i] = answer
    if source == "greedy":
        return answers, [f"old answers: the first word of the model's greedy {max_new_tokens}-token "
                         f"continuation of each of the {len(requests)} prompts"]
    note = (f"{len(missing)} of {len(requests)} requests have no old answer: used the first word of "
            f"the model's greedy {max_new_tokens}-token continuation")
    return answers, [note]
