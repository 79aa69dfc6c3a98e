"""Work that depends only on the weights and a batch, kept while the weights do not change.

Brute force edits the same requests at every layer, each edit from the same weights (restored bit
for bit after it). Some of what an edit computes first does not depend on its layer: the unedited
pass over its batch (models/partial.py's resume points) and the edit matrices' inputs at the
subject (editing/keys.py). An ``UnchangedWeights`` keeps them, computed for every layer at once;
the results are the same tensors the per-layer computation gives.

It is passed explicitly (a ``reuse`` argument) to the functions that may use it, and only its
owner, the engine's ``CellRunner``, which restores the weights after every edit, passes one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.tokens import TokenBatch

T = TypeVar("T")


class UnchangedWeights:
    """A promise that the model's weights are the same whenever this is passed, and what was
    computed meanwhile: per kind of work, the results for its most recent batches (as many as its
    caller's ``capacity``: recorded passes hold every block's input, so few of those). Pass it only
    where the promise holds: to work that starts from the same weights each time, never while an
    edit is in place."""

    def __init__(self) -> None:
        self._kept: dict[str, OrderedDict[tuple, Any]] = {}

    def kept(self, kind: str, handle: ModelHandle, batch: TokenBatch, detail: Any,
             compute: Callable[[], T], capacity: int) -> T:
        """``compute()`` for (kind, batch, detail), or what it gave the last time; keeps the
        ``capacity`` most recent of this kind."""
        store = self._kept.setdefault(kind, OrderedDict())
        key = (id(handle.model), detail, batch_digest(batch))
        if key in store:
            store.move_to_end(key)
            return store[key]
        store[key] = result = compute()
        while len(store) > capacity:
            store.popitem(last=False)
        return result

    def count(self, kind: str) -> int:
        """How many results of ``kind`` are kept now."""
        return len(self._kept.get(kind, ()))


def batch_digest(batch: TokenBatch) -> str:
    """A digest of the batch's tokens, mask and positions: equal batches, equal digests."""
    digest = hashlib.sha256()
    for tensor in (batch.input_ids, batch.attention_mask, batch.position_ids):
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().to("cpu", torch.int64).numpy().tobytes())
    return digest.hexdigest()
