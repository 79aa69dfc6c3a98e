"""The evidence campaign's rules for choosing LGA's default reading (docs/findings.md, "The rule"),
and every choice they made. Campaign bookkeeping, kept out of the installed library: the library
measures each reading (``goldenlayers.study.lga_readings``) and holds the reading in force
(``goldenlayers.locate.readings.DEFAULT_READING``); these rules chose it.

- Rule 4 (``held_out``): each pair's reading chosen on the *other* complete pairs (leave one out).
- Rule 5 (``default_choice``): the reading with the lowest mean regret over every complete pair,
  once there are three; it becomes ``locate``'s default (``DEFAULT_HISTORY``, the last entry).
- Rule 5b (``rules_compared``): the same by the regret over resampled proxy sets, judged against
  rule 5 on the pairs completed after it was written (``RULE_5B_WRITTEN_AFTER``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from goldenlayers.evaluate import Interval
from goldenlayers.locate.readings import LGAReading
from goldenlayers.study.lga_readings import Pair, ReadingRegret

# The reading fixed before the evidence campaign's first cell, reported beside the chosen one.
PREREGISTERED_READING = LGAReading()


@dataclass(frozen=True)
class RuleFiveChoice:
    """A default chosen by rule 5 of docs/findings.md (the lowest mean regret over every complete
    campaign pair) and the pairs ("model x data set") it was chosen on: on any other pair its
    regret is out of sample."""

    reading: LGAReading
    chosen_on: tuple[str, ...]
    when: str


# Every default rule 5 has chosen, oldest first; the last is the one in force. Earlier ones stay so
# the report can show how each did on the pairs that completed after it was chosen. A re-application
# that chooses the reading already in force adds no entry (six pairs, 2026-12-03: the same reading),
# so the in-force entry's out-of-sample pairs stay the ones that completed after its first choice.
DEFAULT_HISTORY = (
    RuleFiveChoice(LGAReading(weights="mlp", old_answer="greedy"),
                   ("smollm2-135m x counterfact", "smollm2-135m x wikicounterfact",
                    "smollm2-135m x zsre"), "2026-12-02, three complete pairs"),
    RuleFiveChoice(LGAReading(similarity="cosine", combine="mean-rank", fence_k=1.5),
                   ("smollm2-135m x counterfact", "smollm2-135m x wikicounterfact",
                    "smollm2-135m x wikirecent", "smollm2-135m x zsre"),
                   "2026-12-02, four complete pairs"),
    RuleFiveChoice(LGAReading(similarity="cosine", combine="mean-rank"),
                   ("gemma3-270m x counterfact", "smollm2-135m x counterfact",
                    "smollm2-135m x wikicounterfact", "smollm2-135m x wikirecent",
                    "smollm2-135m x zsre"), "2026-12-02, five complete pairs"),
)
# Rule 5b's measure as it was written and judged: the mean over the first proxy-size curve's 20
# draws. Figures use 1,000 draws (lga_readings.PROXY_DRAWS); a rule fixed beforehand keeps its own.
RULE_5B_DRAWS = 20
# Rule 5b of docs/findings.md was written when these pairs were complete; it is judged on the others.
RULE_5B_WRITTEN_AFTER = ("gemma3-270m x counterfact", "smollm2-135m x counterfact",
                         "smollm2-135m x wikicounterfact", "smollm2-135m x wikirecent",
                         "smollm2-135m x zsre")


@dataclass(frozen=True)
class DefaultChoice:
    """Rule 5 of docs/findings.md: the reading with the lowest mean regret over every complete
    pair, which becomes ``locate``'s default; its regrets here are in-sample."""

    reading: str
    chosen_on: tuple[Pair, ...]
    mean_regret: float
    on_each: tuple[ReadingRegret, ...]  # the reading on each pair it was chosen on


@dataclass(frozen=True)
class HeldOutChoice:
    """The reading chosen for ``pair`` on the other pairs, and its regret on ``pair``."""

    pair: Pair
    reading: str
    chosen_on: tuple[Pair, ...]
    mean_regret_elsewhere: float
    layer: int
    regret: dict[str, Interval]


@dataclass(frozen=True)
class RulesCompared:
    """On a pair completed after rule 5b was written: what rule 5 and rule 5b, each applied to the
    other complete pairs, choose, and how each choice does on this pair (out of sample)."""

    pair: Pair
    rule_five: ReadingRegret
    rule_five_b: ReadingRegret


def _mean_regret(rows: Sequence[ReadingRegret], metric: str) -> float:
    return float(np.mean([r.regret[metric].mean for r in rows]))


def choose_reading(by_pair: Mapping[Pair, Sequence[ReadingRegret]], pairs: Sequence[Pair],
                   metric: str = "rewrite_accuracy",
                   among: set[str] | None = None) -> tuple[str, float]:
    """The reading with the lowest mean regret over ``pairs`` (among readings every pair has, or
    ``among``); ties: the earlier reading."""
    present = set.intersection(*({r.reading for r in by_pair[p]} for p in pairs))
    names = [r.reading for r in by_pair[pairs[0]]
             if r.reading in present and (among is None or r.reading in among)]
    means = [_mean_regret([next(r for r in by_pair[p] if r.reading == name) for p in pairs], metric)
             for name in names]
    best = int(np.argmin(means))  # argmin keeps the first of equal means
    return names[best], means[best]


def held_out(by_pair: Mapping[Pair, Sequence[ReadingRegret]],
             metric: str = "rewrite_accuracy") -> list[HeldOutChoice]:
    """Leave one pair out: each pair's reading chosen on the others. Needs two pairs or more."""
    pairs = sorted(by_pair)
    if len(pairs) < 2:
        return []
    out = []
    for pair in pairs:
        others = [p for p in pairs if p != pair]
        everywhere = set.intersection(*({r.reading for r in by_pair[p]} for p in pairs))
        name, elsewhere = choose_reading(by_pair, others, metric, among=everywhere)
        here = next(r for r in by_pair[pair] if r.reading == name)
        out.append(HeldOutChoice(pair, name, tuple(others), elsewhere, here.layer, here.regret))
    return out


def default_choice(by_pair: Mapping[Pair, Sequence[ReadingRegret]], min_pairs: int = 3,
                   metric: str = "rewrite_accuracy") -> DefaultChoice | None:
    """The reading chosen on all pairs (rule 5), once there are ``min_pairs`` of them."""
    pairs = sorted(by_pair)
    if len(pairs) < min_pairs:
        return None
    name, mean = choose_reading(by_pair, pairs, metric)
    return DefaultChoice(name, tuple(pairs), mean,
                         tuple(next(r for r in by_pair[p] if r.reading == name) for p in pairs))


def out_of_sample(by_pair: Mapping[Pair, Sequence[ReadingRegret]],
                  choice: RuleFiveChoice = DEFAULT_HISTORY[-1]) -> list[ReadingRegret]:
    """A rule-5 choice's reading on every pair it was not chosen on, where its regret estimates how
    it does on a pair nobody chose it on; pairs without that reading are left out."""
    return [r for pair in sorted(by_pair) if str(pair) not in choice.chosen_on
            for r in by_pair[pair] if r.reading == choice.reading.name]


def rules_compared(by_pair: Mapping[Pair, Sequence[ReadingRegret]],
                   resampled: Mapping[Pair, Sequence[ReadingRegret]],
                   written_after: Sequence[str] = RULE_5B_WRITTEN_AFTER,
                   min_pairs: int = 3) -> list[RulesCompared]:
    """Rule 5 (lowest mean regret on each pair's own proxy set) against rule 5b (lowest mean
    resampled regret), each choosing on the other complete pairs, on every pair completed after
    rule 5b was written. Both choose among the readings every pair has in both measures."""
    pairs = sorted(p for p in by_pair if p in resampled and resampled[p])
    out = []
    for pair in pairs:
        others = [p for p in pairs if p != pair]
        if str(pair) in written_after or len(others) < min_pairs:
            continue
        shared = set.intersection(*({r.reading for r in by_pair[p]} for p in pairs),
                                  *({r.reading for r in resampled[p]} for p in pairs))
        five, _ = choose_reading(by_pair, others, among=shared)
        five_b, _ = choose_reading(resampled, others, among=shared)
        here = {r.reading: r for r in by_pair[pair]}
        out.append(RulesCompared(pair, here[five], here[five_b]))
    return out
