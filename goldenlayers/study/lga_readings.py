"""LGA's readings against brute force, and the held-out choice among them (docs/findings.md, "The
rule").

From a run folder's stored gradient products (locate rows ``lga-products``) every reading's layer
is recomputed without the model, and scored on the test grid as a regret (the test golden layer's
mean minus the reading layer's mean, with a bootstrap 95% interval over test requests). Across
pairs (model, data set), each pair's reading is chosen on the *other* pairs (leave one pair out).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from goldenlayers.engine import Grid, LocateRow
from goldenlayers.evaluate import OVERALL, Interval, bootstrap_interval
from goldenlayers.locate.readings import (DEFAULT_HISTORY, DEFAULT_READING, GradientProducts,
                                          LGAReading, RuleFiveChoice, all_readings, products_for,
                                          reading_layer)

PRODUCTS = "lga-products"  # the method name of the locate rows that hold LGA's gradient products
REGRET_METRICS = ("rewrite_accuracy", OVERALL)
PROXY_SIZES = (5, 10, 20, 50)
RESAMPLED_SIZE = 20  # rule 5b: proxy sets of this many requests, as many as the campaign's proxy set
# Rule 5b of docs/findings.md was written when these pairs were complete; it is judged on the others.
RULE_5B_WRITTEN_AFTER = ("gemma3-270m x counterfact", "smollm2-135m x counterfact",
                         "smollm2-135m x wikicounterfact", "smollm2-135m x wikirecent",
                         "smollm2-135m x zsre")


@dataclass(frozen=True, order=True)
class Pair:
    model: str
    dataset: str

    def __str__(self) -> str:
        return f"{self.model} x {self.dataset}"


@dataclass(frozen=True)
class ReadingRegret:
    """One reading on one pair: its layer on the proxy products and its regret on the test set."""

    pair: Pair
    reading: str
    layer: int
    regret: dict[str, Interval]  # by metric


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


@dataclass(frozen=True)
class ProxySizePoint:
    """A reading at one proxy size: the layers it picked over resamples, and their mean regret."""

    pair: Pair
    reading: str
    size: int
    resamples: int
    layers: dict[int, int]  # layer -> how many resamples picked it
    regret: Interval  # of the per-resample rewrite regrets (mean over resamples, 95% interval)


def stored_products(rows: Sequence[LocateRow], dataset: str, split: str) -> list[GradientProducts]:
    for row in rows:
        if row.dataset == dataset and row.split == split and row.method == PRODUCTS:
            return [GradientProducts.from_dict(p) for p in row.result["products"]]
    return []


def regret_of(test: Grid, layer: int, metric: str) -> Interval:
    """Test regret of ``layer`` against the test golden layer of ``metric``."""
    if layer not in test.layers:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    return test.regret(metric, layer, test.golden_layer(metric))


def reading_regrets(pair: Pair, test: Grid, products: Sequence[GradientProducts],
                    readings: Sequence[LGAReading] | None = None) -> list[ReadingRegret]:
    """Every reading's layer (from the proxy products) and its test regret, in reading order."""
    out = []
    available = {(p.weights, p.old_answer) for p in products}
    for reading in readings or all_readings():
        if (reading.weights, reading.old_answer) not in available:
            continue  # no request had an old answer of this kind (the locate row's notes say so)
        layer = reading_layer(products_for(products, reading), reading)
        out.append(ReadingRegret(pair, reading.name, layer,
                                 {m: regret_of(test, layer, m) for m in REGRET_METRICS
                                  if m in test.metrics}))
    return out


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


def resampled_regrets(pair: Pair, test: Grid, proxy: Sequence[GradientProducts],
                      pool: Sequence[GradientProducts], readings: Sequence[LGAReading] | None = None,
                      size: int = RESAMPLED_SIZE) -> list[ReadingRegret]:
    """Rule 5b's measure: each reading's mean rewrite-accuracy regret over the proxy-size curve's
    draws of ``size`` requests (the same draws, so readings are compared on the same sets where
    they share products); ``layer`` is the one picked most often. Empty when the proxy and pool
    requests are fewer than ``size``."""
    sizes = tuple(s for s in PROXY_SIZES if s < size) + (size,)  # the curve's draws come in order
    available = {(p.weights, p.old_answer) for p in proxy}
    out = []
    for reading in readings or all_readings():
        if (reading.weights, reading.old_answer) not in available:
            continue
        both = _proxy_and_pool(proxy, pool, reading)
        rows_of_each = proxy_draws(pair, both.num_requests, sizes).get(size)
        if rows_of_each is None:
            continue
        point = _draws_point(pair, test, both, reading, size, rows_of_each, seed=0)
        layer = max(point.layers, key=point.layers.get)  # ties: the shallower layer
        out.append(ReadingRegret(pair, reading.name, layer, {"rewrite_accuracy": point.regret}))
    return out


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


def proxy_draws(pair: Pair, num_requests: int, sizes: Sequence[int] = PROXY_SIZES,
                resamples: int = 20, seed: int = 0) -> dict[int, list[list[int]]]:
    """The proxy-size curve's draws: for each size up to ``num_requests``, ``resamples`` sorted
    row sets drawn without replacement, seeded by the pair, sizes in order (so a size's draws
    depend on the sizes before it, never on the reading)."""
    generator = random.Random(f"proxy-size:{seed}:{pair}")
    return {size: [sorted(generator.sample(range(num_requests), size)) for _ in range(resamples)]
            for size in sizes if size <= num_requests}


def proxy_size_curve(pair: Pair, test: Grid, proxy: Sequence[GradientProducts],
                     pool: Sequence[GradientProducts], reading: LGAReading = DEFAULT_READING,
                     sizes: Sequence[int] = PROXY_SIZES, resamples: int = 20,
                     seed: int = 0) -> list[ProxySizePoint]:
    """The reading's layer on ``size`` requests drawn (seeded, without replacement) from the proxy
    and pool products together, ``resamples`` times per size, and the regret of each draw."""
    both = _proxy_and_pool(proxy, pool, reading)
    draws = proxy_draws(pair, both.num_requests, sizes, resamples, seed)
    return [_draws_point(pair, test, both, reading, size, rows_of_each, seed)
            for size, rows_of_each in draws.items()]


def _draws_point(pair: Pair, test: Grid, both: GradientProducts, reading: LGAReading, size: int,
                 rows_of_each: Sequence[Sequence[int]], seed: int) -> ProxySizePoint:
    layers, regrets = Counter(), []
    for rows in rows_of_each:
        layer = reading_layer(_rows(both, rows), reading)
        layers[layer] += 1
        regrets.append(regret_of(test, layer, "rewrite_accuracy").mean)
    return ProxySizePoint(pair, reading.name, size, len(rows_of_each), dict(sorted(layers.items())),
                          bootstrap_interval(regrets, seed=seed))


def _proxy_and_pool(proxy: Sequence[GradientProducts], pool: Sequence[GradientProducts],
                    reading: LGAReading) -> GradientProducts:
    """The reading's products of the proxy and the pool requests, as one request set."""
    return _stacked(products_for(proxy, reading), products_for(pool, reading) if pool else None)


def _stacked(a: GradientProducts, b: GradientProducts | None) -> GradientProducts:
    if b is None:
        return a
    return GradientProducts(a.weights, a.old_answer, a.request_ids + b.request_ids,
                            np.vstack([a.inner, b.inner]),
                            np.vstack([a.squared_norm_new, b.squared_norm_new]),
                            np.vstack([a.squared_norm_old, b.squared_norm_old]))


def _rows(products: GradientProducts, rows: Sequence[int]) -> GradientProducts:
    return GradientProducts(products.weights, products.old_answer,
                            tuple(products.request_ids[i] for i in rows), products.inner[rows],
                            products.squared_norm_new[rows], products.squared_norm_old[rows])
