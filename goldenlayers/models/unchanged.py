"""Work that depends only on the weights and a batch, kept while the weights do not change.

Brute force edits the same requests at every layer, each edit from the same weights (restored bit
for bit after it). Some of what an edit computes first does not depend on its layer: the unedited
pass over its batch (models/partial.py's resume points) and the edit matrices' inputs at the
subject (editing/keys.py). ``UnchangedWeights`` keeps them, computed for every layer at once, while
it is active; the results are the same tensors the per-layer computation gives.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import torch

from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.tokens import TokenBatch

T = TypeVar("T")


class UnchangedWeights:
    """A promise that the model's weights are the same whenever this is active, and what was
    computed meanwhile: per kind of work, the results for its most recent batches (as many as its
    caller's ``capacity``: recorded passes hold every block's input, so few of those). Activate it only
    where the promise holds: around work that starts from the same weights each time, never while
    an edit is in place."""

    def __init__(self) -> None:
        self._kept: dict[str, OrderedDict[tuple, Any]] = {}

    @contextmanager
    def active(self) -> Iterator[UnchangedWeights]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def kept(self, kind: str, handle: ModelHandle, batch: TokenBatch, detail: Any,
             compute: Callable[[], T], capacity: int) -> T:
        """``compute()`` for (kind, batch, detail), or what it gave the last time; keeps the
        ``capacity`` most recent of this kind."""
        store = self._kept.setdefault(kind, OrderedDict())
        key = (id(handle.model), detail, fingerprint(batch))
        if key in store:
            store.move_to_end(key)
            return store[key]
        store[key] = result = compute()
        while len(store) > capacity:
            store.popitem(last=False)
        return result


_ACTIVE: ContextVar[UnchangedWeights | None] = ContextVar("unchanged_weights", default=None)


def active_unchanged() -> UnchangedWeights | None:
    """The active ``UnchangedWeights``, if any."""
    return _ACTIVE.get()


def fingerprint(batch: TokenBatch) -> str:
    """A digest of the batch's tokens, mask and positions: equal batches, equal digests."""
    digest = hashlib.sha256()
    for tensor in (batch.input_ids, batch.attention_mask, batch.position_ids):
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().to("cpu", torch.int64).numpy().tobytes())
    return digest.hexdigest()
