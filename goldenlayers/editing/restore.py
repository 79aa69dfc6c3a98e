"""Exact undo: copies of the parameters an edit touches, written back bit for bit.

Subtracting a delta again (W + D - D) is not exact in floating point; copying the saved tensor is.
Only the edit matrices of the touched layers are saved, so the copy costs one matrix per layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from goldenlayers.models.handle import ModelHandle


@dataclass(frozen=True)
class Snapshot:
    tensors: dict[int, torch.Tensor]  # layer -> copy of the stored edit weight (its own orientation)


def snapshot(handle: ModelHandle, layers: Iterable[int]) -> Snapshot:
    adapter, model = handle.adapter, handle.model
    return Snapshot({layer: adapter.edit_weight(model, layer).detach().clone()
                     for layer in sorted(set(layers))})


def restore(handle: ModelHandle, saved: Snapshot) -> None:
    with torch.no_grad():
        for layer, tensor in saved.tensors.items():
            handle.adapter.edit_weight(handle.model, layer).copy_(tensor)


@contextmanager
def preserved(handle: ModelHandle, layers: Iterable[int]) -> Iterator[Snapshot]:
    """The edit matrices of ``layers`` are exactly as before on exit, also when the body raises."""
    saved = snapshot(handle, layers)
    try:
        yield saved
    finally:
        restore(handle, saved)
