"""Seeded proxy/test splits (paper: 10% proxy to find the golden layer, 90% test to score it)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from goldenlayers.data.load import Dataset
from goldenlayers.data.records import EditRequest
from goldenlayers.errors import InputError


@dataclass(frozen=True)
class Split:
    """``proxy`` and ``test`` keep the input order. ``parts``: for a proxy union, each data set's own
    split by name (its test part is where the union's golden layer is scored)."""

    proxy: list[EditRequest]
    test: list[EditRequest]
    parts: dict[str, Split] = field(default_factory=dict)


def split(requests: Dataset | Sequence[EditRequest], proxy_fraction: float = 0.1,
          seed: int = 0) -> Split:
    """A seeded random split: round(proxy_fraction * n) requests (at least one, and at least one
    left for test when n >= 2) go to the proxy set, the rest to the test set."""
    requests = list(requests)
    if not 0.0 < proxy_fraction < 1.0:
        raise InputError(f"proxy_fraction must be between 0 and 1 (exclusive), got {proxy_fraction}",
                         field="proxy_fraction")
    if len(requests) < 2:
        raise InputError(f"need at least 2 requests to split, got {len(requests)}", field="requests")
    n_proxy = min(max(1, round(proxy_fraction * len(requests))), len(requests) - 1)
    chosen = set(random.Random(seed).sample(range(len(requests)), n_proxy))
    proxy = [r for i, r in enumerate(requests) if i in chosen]
    test = [r for i, r in enumerate(requests) if i not in chosen]
    return Split(proxy, test)


def proxy_union(datasets: Iterable[Dataset | Sequence[EditRequest]], proxy_fraction: float = 0.1,
                seed: int = 0) -> Split:
    """Split each data set with the same seed; the union of their proxy parts and of their test
    parts, with each data set's own split in ``parts`` (paper Figure 2)."""
    parts: dict[str, Split] = {}
    for position, data in enumerate(datasets):
        name = _name_of(data, position)
        if name in parts:
            raise InputError(f"data set {name!r} given twice", field="datasets")
        parts[name] = split(data, proxy_fraction, seed)
    if not parts:
        raise InputError("no data sets given", field="datasets")
    proxy = [r for part in parts.values() for r in part.proxy]
    test = [r for part in parts.values() for r in part.test]
    return Split(proxy, test, parts)


def _name_of(data: Dataset | Sequence[EditRequest], position: int) -> str:
    if isinstance(data, Dataset):
        return data.name
    sources = {r.source for r in data}
    return sources.pop() if len(sources) == 1 and "" not in sources else f"set{position}"
