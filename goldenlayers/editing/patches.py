"""Edit patches: an ``EditResult`` as a small safetensors file that can be applied to, and removed
from, the model it was made for.

The file holds each layer's low-rank factors (delta W = left @ right.T, [d_out, d_in]), the model's
fingerprint, the editor, its config and the requests. When the original weights are known at save
time, it also holds their SHA-256 and a fixed sample of their entries, so that removal can say how
far the weights are from the original afterwards (W + D - D is exact only up to float rounding).
A patch made for another model is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from goldenlayers.editing.base import EditResult, LayerUpdate, add_update
from goldenlayers.editing.errors import PatchError
from goldenlayers.editing.restore import Snapshot
from goldenlayers.models.handle import ModelHandle, weights_digest

FORMAT = "goldenlayers-patch/1"
SAMPLE_SIZE = 1024


@dataclass(frozen=True)
class OriginalSample:
    sha256: str  # of the stored edit weight's bytes before the edit
    index: torch.Tensor  # (S,) positions in the flattened stored weight
    values: torch.Tensor  # (S,) the original values there


@dataclass(frozen=True)
class Patch:
    updates: tuple[LayerUpdate, ...]
    editor: str
    model_name: str
    fingerprint: str
    edited_fingerprint: str | None  # current_fingerprint of the edited weights
    weights_fingerprint: str | None  # current_fingerprint of the weights before the edit
    requests: tuple[dict, ...]
    config: dict
    originals: dict[int, OriginalSample]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(u.layer for u in self.updates)


@dataclass(frozen=True)
class RemovalReport:
    layers: tuple[int, ...]
    bit_identical: bool | None  # None: the patch holds no reference to compare with
    max_abs_error: float | None  # over the sampled entries
    max_rel_error: float | None  # the same, relative to the largest sampled original entry

    def describe(self) -> str:
        if self.bit_identical is None:
            return "removed; the patch holds no copy of the original weights to compare with"
        if self.bit_identical:
            return "removed; the weights are bit for bit the original ones"
        return (f"removed; the weights differ from the original by float rounding: at most "
                f"{self.max_abs_error:.3g} ({self.max_rel_error:.3g} relative) over "
                f"{SAMPLE_SIZE} sampled entries per layer")


def weight_digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes()).hexdigest()


def current_fingerprint(handle: ModelHandle) -> str:
    """The weights as they are now (``handle.fingerprint`` is fixed at load and includes the config)."""
    return weights_digest(handle)


def _sample(tensor: torch.Tensor, layer: int) -> OriginalSample:
    generator = torch.Generator().manual_seed(layer)
    index = torch.randint(0, tensor.numel(), (min(SAMPLE_SIZE, tensor.numel()),), generator=generator)
    flat = tensor.detach().reshape(-1).cpu()
    return OriginalSample(weight_digest(tensor), index.int(), flat[index].clone())


def save_patch(result: EditResult, path: str | Path, original: Snapshot | None = None,
               edited_fingerprint: str | None = None, weights_fingerprint: str | None = None) -> Path:
    """Write ``result`` as a patch. ``original``: a snapshot taken before the edit (restore.py);
    ``weights_fingerprint`` / ``edited_fingerprint``: ``current_fingerprint`` of the model before
    and after the edit, so that a saved copy of either is recognised."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for update in result.updates:
        tensors[f"layer.{update.layer}.left"] = update.left.float().contiguous().cpu()
        tensors[f"layer.{update.layer}.right"] = update.right.float().contiguous().cpu()
        if original is not None and update.layer in original.tensors:
            sample = _sample(original.tensors[update.layer], update.layer)
            tensors[f"layer.{update.layer}.original_index"] = sample.index
            tensors[f"layer.{update.layer}.original_values"] = sample.values.float()
            tensors[f"layer.{update.layer}.original_sha256"] = torch.tensor(
                list(bytes.fromhex(sample.sha256)), dtype=torch.uint8)
    metadata = {
        "format": FORMAT, "editor": result.editor, "model": result.model_name,
        "fingerprint": result.model_fingerprint, "edited_fingerprint": edited_fingerprint or "",
        "weights_fingerprint": weights_fingerprint or "",
        "layers": json.dumps([u.layer for u in result.updates]),
        "requests": json.dumps([dataclasses.asdict(r) for r in result.requests]),
        "config": json.dumps(result.config),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_patch(path: str | Path) -> Patch:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as error:  # safetensors raises several types for unreadable files
        raise PatchError(f"{path}: not a readable patch file ({error})") from error
    if metadata.get("format") != FORMAT:
        raise PatchError(f"{path}: not a goldenlayers patch (format {metadata.get('format')!r}, "
                         f"expected {FORMAT!r})")
    layers = json.loads(metadata["layers"])
    updates = tuple(LayerUpdate(l, tensors[f"layer.{l}.left"], tensors[f"layer.{l}.right"])
                    for l in layers)
    originals = {l: OriginalSample(bytes(tensors[f"layer.{l}.original_sha256"].tolist()).hex(),
                                   tensors[f"layer.{l}.original_index"],
                                   tensors[f"layer.{l}.original_values"])
                 for l in layers if f"layer.{l}.original_index" in tensors}
    return Patch(updates=updates, editor=metadata["editor"], model_name=metadata["model"],
                 fingerprint=metadata["fingerprint"],
                 edited_fingerprint=metadata.get("edited_fingerprint") or None,
                 weights_fingerprint=metadata.get("weights_fingerprint") or None,
                 requests=tuple(json.loads(metadata["requests"])),
                 config=json.loads(metadata["config"]), originals=originals)


def _check_model(handle: ModelHandle, patch: Patch, accepted: tuple[str | None, ...]) -> None:
    """The model must be the patch's: its load-time fingerprint, or its weights' fingerprint, is
    one of ``accepted`` (the original's, and for removal the edited one's)."""
    if handle.fingerprint != patch.fingerprint and current_fingerprint(handle) not in accepted:
        raise PatchError(
            f"this patch was made for model {patch.model_name!r} (fingerprint {patch.fingerprint}), "
            f"not for {handle.name!r} (fingerprint {handle.fingerprint}); refusing to apply it")
    for update in patch.updates:
        d_out, d_in = handle.adapter.edit_weight_out_in(handle.model, update.layer).shape
        if update.left.shape[0] != d_out or update.right.shape[0] != d_in:
            raise PatchError(f"layer {update.layer}: the patch is for a [{update.left.shape[0]}, "
                             f"{update.right.shape[0]}] matrix, the model's is [{d_out}, {d_in}]")


def apply_patch(handle: ModelHandle, patch: Patch) -> None:
    """Add the patch's deltas to the model it was made for."""
    _check_model(handle, patch, (patch.weights_fingerprint,))
    for update in patch.updates:
        add_update(handle, update)


def remove_patch(handle: ModelHandle, patch: Patch) -> RemovalReport:
    """Subtract the patch's deltas; say how far the weights then are from the original."""
    _check_model(handle, patch, (patch.weights_fingerprint, patch.edited_fingerprint))
    for update in patch.updates:
        add_update(handle, update, sign=-1.0)
    if not patch.originals:
        return RemovalReport(patch.layers, None, None, None)
    identical, abs_error, rel_error = True, 0.0, 0.0
    for layer, sample in patch.originals.items():
        weight = handle.adapter.edit_weight(handle.model, layer)
        identical &= weight_digest(weight) == sample.sha256
        now = weight.detach().reshape(-1).cpu()[sample.index.long()].double()
        error = (now - sample.values.double()).abs()
        abs_error = max(abs_error, float(error.max()))
        scale = float(sample.values.double().abs().max().clamp(min=1e-12))
        rel_error = max(rel_error, float(error.max()) / scale)
    return RemovalReport(patch.layers, identical, abs_error, rel_error)
