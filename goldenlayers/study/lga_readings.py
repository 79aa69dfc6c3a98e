"""LGA's readings against brute force, measured from a run folder's files.

From a run folder's stored gradient products (locate rows ``lga-products``) every reading's layer
is recomputed without the model, and scored on the test grid as a regret (the test golden layer's
mean minus the reading layer's mean, with a bootstrap 95% interval over test requests), on the
study's own proxy set or on proxy sets resampled from its proxy and pool requests. Choosing a
reading from these measures is the campaign's business (campaign/rules.py), not the library's.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from goldenlayers.engine import Grid, LocateRow
from goldenlayers.evaluate import OVERALL, Interval, bootstrap_interval
from goldenlayers.locate.readings import (DEFAULT_READING, GradientProducts, LGAReading,
                                          all_readings, products_for, reading_layer)

PRODUCTS = "lga-products"  # the method name of the locate rows that hold LGA's gradient products
REGRET_METRICS = ("rewrite_accuracy", OVERALL)
PROXY_SIZES = (5, 10, 20, 50)
RESAMPLED_SIZE = 20  # resampled proxy sets of this many requests, as many as the campaign's proxy set
PROXY_DRAWS = 1000  # draws per proxy size: 20 understated the spread of the picks (issue 28)


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
    """Test regret of ``layer`` against the test-best layer of ``metric``, re-picked in each
    bootstrap resample."""
    if layer not in test.layers:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    return test.regret_to_best(metric, layer)


def reading_regrets(pair: Pair, test: Grid, products: Sequence[GradientProducts],
                    readings: Sequence[LGAReading] | None = None) -> list[ReadingRegret]:
    """Every reading's layer (from the proxy products) and its test regret, in reading order."""
    out, regret_at = [], {}  # many readings pick the same layer: bootstrap each layer once
    available = {(p.weights, p.old_answer) for p in products}
    for reading in readings or all_readings():
        if (reading.weights, reading.old_answer) not in available:
            continue  # no request had an old answer of this kind (the locate row's notes say so)
        layer = reading_layer(products_for(products, reading), reading)
        if layer not in regret_at:
            regret_at[layer] = {m: regret_of(test, layer, m) for m in REGRET_METRICS
                                if m in test.metrics}
        out.append(ReadingRegret(pair, reading.name, layer, dict(regret_at[layer])))
    return out


def resampled_regrets(pair: Pair, test: Grid, proxy: Sequence[GradientProducts],
                      pool: Sequence[GradientProducts], readings: Sequence[LGAReading] | None = None,
                      size: int = RESAMPLED_SIZE, draws: int = PROXY_DRAWS) -> list[ReadingRegret]:
    """Each reading's mean rewrite-accuracy regret over the proxy-size curve's ``draws``
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
        rows_of_each = proxy_draws(pair, both.num_requests, sizes, draws).get(size)
        if rows_of_each is None:
            continue
        point = _draws_point(pair, test, both, reading, size, rows_of_each, seed=0)
        layer = max(point.layers, key=point.layers.get)  # ties: the shallower layer
        out.append(ReadingRegret(pair, reading.name, layer, {"rewrite_accuracy": point.regret}))
    return out


def proxy_draws(pair: Pair, num_requests: int, sizes: Sequence[int] = PROXY_SIZES,
                resamples: int = PROXY_DRAWS, seed: int = 0) -> dict[int, list[list[int]]]:
    """The proxy-size curve's draws: for each size up to ``num_requests``, ``resamples`` sorted
    row sets drawn without replacement, seeded by the pair, sizes in order (so a size's draws
    depend on the sizes before it, never on the reading)."""
    generator = random.Random(f"proxy-size:{seed}:{pair}")
    return {size: [sorted(generator.sample(range(num_requests), size)) for _ in range(resamples)]
            for size in sizes if size <= num_requests}


def proxy_size_curve(pair: Pair, test: Grid, proxy: Sequence[GradientProducts],
                     pool: Sequence[GradientProducts], reading: LGAReading = DEFAULT_READING,
                     sizes: Sequence[int] = PROXY_SIZES, resamples: int = PROXY_DRAWS,
                     seed: int = 0) -> list[ProxySizePoint]:
    """The reading's layer on ``size`` requests drawn (seeded, without replacement) from the proxy
    and pool products together, ``resamples`` times per size, and the regret of each draw."""
    both = _proxy_and_pool(proxy, pool, reading)
    draws = proxy_draws(pair, both.num_requests, sizes, resamples, seed)
    return [_draws_point(pair, test, both, reading, size, rows_of_each, seed)
            for size, rows_of_each in draws.items()]


def _draws_point(pair: Pair, test: Grid, both: GradientProducts, reading: LGAReading, size: int,
                 rows_of_each: Sequence[Sequence[int]], seed: int) -> ProxySizePoint:
    picks = [reading_layer(_rows(both, rows), reading) for rows in rows_of_each]
    # a draw's regret is its layer's point regret: computed once per layer, not once per draw
    regret_at = {layer: regret_of(test, layer, "rewrite_accuracy").mean for layer in set(picks)}
    return ProxySizePoint(pair, reading.name, size, len(picks), dict(sorted(Counter(picks).items())),
                          bootstrap_interval([regret_at[layer] for layer in picks], seed=seed))


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
