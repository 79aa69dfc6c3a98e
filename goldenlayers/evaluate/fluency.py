"""Fluency: the weighted n-gram entropy of generated text, as EasyEdit (and ROME before it) has it.

For one text with word tokens w_1..w_m and each n in ns, let p_n be the relative frequencies of the
distinct n-grams (w_i, ..., w_{i+n-1}) of the text. Then

    H_n     = - sum_g p_n(g) * log2 p_n(g)                  (0 when the text has fewer than n words)
    fluency = mean_k ( weights[k] * H_{ns[k]} )  =  (2/3 * H_2 + 4/3 * H_3) / 2   by default

no 1-grams, log base 2; a set of texts scores the arithmetic mean of its texts (EasyEdit's
``n_gram_entropy`` with agg="arith"). EasyEdit splits words with nltk.word_tokenize; we use a regex,
runs of word characters and single punctuation marks, which agrees with it on plain text and differs
on contractions ("don't": nltk gives "do", "n't"; we give "don", "'", "t") and on quotes.

Text generation: greedy decoding of up to ``max_new_tokens`` new tokens from each prompt, batched
(``greedy_continuations``). As in ROME's ``generate_fast``, whose output EasyEdit scores, the
scored text is the prompt followed by its continuation; ``include_prompt=False`` scores the
continuation only.
(EasyEdit's default samples with top-k 5 and counts the prompt in its 100 tokens; greedy decoding is
deterministic, so before/after numbers differ only by the edit.)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from goldenlayers.models.handle import ModelHandle, greedy_continuations

WORD_TOKEN = re.compile(r"\w+|[^\w\s]")
NGRAM_SIZES = (2, 3)
NGRAM_WEIGHTS = (2 / 3, 4 / 3)


def word_tokens(text: str) -> list[str]:
    return WORD_TOKEN.findall(text)


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """Entropy in bits of the frequency distribution of the n-grams of ``tokens``."""
    counts = Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def n_gram_entropy(text: str, ns: Sequence[int] = NGRAM_SIZES,
                   weights: Sequence[float] = NGRAM_WEIGHTS) -> float:
    """EasyEdit's compute_n_gram_entropy: the mean over n of weight_n * H_n, on word tokens."""
    if len(ns) != len(weights) or not ns:
        raise ValueError(f"need one weight per n-gram size, got ns={ns} and weights={weights}")
    tokens = word_tokens(text)
    return sum(w * ngram_entropy(tokens, n) for n, w in zip(ns, weights)) / len(ns)


def fluency_scores(handle: ModelHandle, prompts: Sequence[str], max_new_tokens: int = 100,
                   batch_size: int = 16, *, include_prompt: bool = True) -> list[float]:
    """n-gram entropy of each prompt's greedy continuation (with the prompt, by default)."""
    continuations = greedy_continuations(handle, list(prompts), max_new_tokens, batch_size)
    texts = [p + c if include_prompt else c for p, c in zip(prompts, continuations)]
    return [n_gram_entropy(text) for text in texts]
