"""Edit patches: an ``EditResult`` as a small safetensors file that can be applied to, and removed
from, the model it was made for.

The file holds each layer's low-rank factors (delta W = left @ right.T, [d_out, d_in]), the
architecture and matrix shapes, the editor, its config and the requests, and for each layer the
SHA-256 of the weights it was made from ("before") and of the weights with it ("after"), plus a
fixed sample of entries of both.

A patch is applied only onto its "before" weights and removed only from its "after" weights;
anything else is refused with a message that says what the weights match instead (already
applied, not applied, or neither), before any weight is touched. W + D - D equals W only up to
float rounding, so weights that match a state within rounding on the sampled entries count as
that state: a patch can be removed and applied again.
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
from goldenlayers.editing.restore import Snapshot, preserved, restore, snapshot
from goldenlayers.files.atomic import named_write_errors
from goldenlayers.files.outputs import output_path
from goldenlayers.models.handle import ModelHandle, weights_digest

FORMAT = "goldenlayers-patch/2"
OLD_FORMATS = ("goldenlayers-patch/1",)
SAMPLE_SIZE = 1024
ROUNDING = 64  # weights within this many float epsilons (of the largest entry) count as equal


@dataclass(frozen=True)
class LayerState:
    """What one layer's stored edit weight looks like before and after the patch."""

    before_sha256: str
    after_sha256: tuple[str, ...]  # as apply_patch makes it; and as the editor left it, if other
    index: torch.Tensor  # (S,) positions in the flattened stored weight
    before: torch.Tensor  # (S,) the values there before the patch
    after: torch.Tensor  # (S,) and with it


@dataclass(frozen=True)
class Patch:
    updates: tuple[LayerUpdate, ...]
    editor: str
    model_name: str
    fingerprint: str
    architecture: str
    requests: tuple[dict, ...]
    config: dict
    states: dict[int, LayerState]
    path: str = ""

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(u.layer for u in self.updates)

    @property
    def label(self) -> str:
        return f"patch {self.path}" if self.path else f"the {self.editor} patch"


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


def _sample_index(tensor: torch.Tensor, layer: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(layer)
    return torch.randint(0, tensor.numel(), (min(SAMPLE_SIZE, tensor.numel()),), generator=generator)


def _values(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return tensor.detach().reshape(-1).cpu()[index.long()].float().clone()


def _layer_states(handle: ModelHandle, updates: tuple[LayerUpdate, ...],
                  original: Snapshot) -> dict[int, LayerState]:
    """Each layer before (``original``) and after: the patch added to ``original`` the way
    ``apply_patch`` adds it, and the weights as they are now when they differ from both."""
    adapter, model = handle.adapter, handle.model
    layers = [u.layer for u in updates]
    missing = [layer for layer in layers if layer not in original.tensors]
    if missing:
        raise PatchError(f"the snapshot of the weights before the edit lacks layers {missing}")
    now = {layer: adapter.edit_weight(model, layer).detach().clone() for layer in layers}
    with preserved(handle, layers):
        restore(handle, original)
        for update in updates:
            add_update(handle, update)
        applied = {layer: adapter.edit_weight(model, layer).detach().clone() for layer in layers}
    states = {}
    for layer in layers:
        before = original.tensors[layer]
        after = [weight_digest(applied[layer])]
        current = weight_digest(now[layer])
        if current not in (after[0], weight_digest(before)):
            after.append(current)  # the editor's own result, e.g. a saved edited model
        index = _sample_index(before, layer)
        states[layer] = LayerState(weight_digest(before), tuple(after), index.int(),
                                   _values(before, index), _values(applied[layer], index))
    return states


def save_patch(result: EditResult, path: str | Path, original: Snapshot,
               handle: ModelHandle) -> Path:
    """Write ``result`` as a patch, atomically. ``original``: a snapshot of the edited layers
    taken before the edit (``restore.snapshot``); ``handle``: the model (edited or not: its
    weights are as before when this returns)."""
    if original is None:
        raise PatchError("a patch needs the weights it was made from: pass original=snapshot(...) "
                         "taken before the edit")
    path = Path(path)
    updates = tuple(LayerUpdate(u.layer, u.left.float().contiguous().cpu(),
                                u.right.float().contiguous().cpu()) for u in result.updates)
    states = _layer_states(handle, updates, original)
    tensors: dict[str, torch.Tensor] = {}
    for update in updates:
        state = states[update.layer]
        prefix = f"layer.{update.layer}"
        tensors |= {f"{prefix}.left": update.left, f"{prefix}.right": update.right,
                    f"{prefix}.sample_index": state.index, f"{prefix}.before_values": state.before,
                    f"{prefix}.after_values": state.after}
    metadata = {
        "format": FORMAT, "editor": result.editor, "model": result.model_name,
        "fingerprint": result.model_fingerprint, "architecture": handle.adapter.name,
        "layers": json.dumps([u.layer for u in updates]),
        "digests": json.dumps({str(layer): {"before": state.before_sha256,
                                            "after": list(state.after_sha256)}
                               for layer, state in states.items()}),
        "requests": json.dumps([dataclasses.asdict(r) for r in result.requests]),
        "config": json.dumps(result.config),
    }
    with named_write_errors(path), output_path(path) as staging:
        save_file(tensors, str(staging), metadata=metadata)
    return path


def load_patch(path: str | Path) -> Patch:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as error:  # safetensors raises several types for unreadable files
        raise PatchError(f"{path}: not a readable patch file ({error})") from error
    if metadata.get("format") in OLD_FORMATS:
        raise PatchError(f"{path}: made by an earlier goldenlayers, without the weight digests "
                         f"that keep apply and remove safe; make it again with goldenlayers edit --patch")
    if metadata.get("format") != FORMAT:
        raise PatchError(f"{path}: not a goldenlayers patch (format {metadata.get('format')!r}, "
                         f"expected {FORMAT!r})")
    try:
        layers = json.loads(metadata["layers"])
        digests = json.loads(metadata["digests"])
        updates = tuple(LayerUpdate(l, tensors[f"layer.{l}.left"], tensors[f"layer.{l}.right"])
                        for l in layers)
        states = {l: LayerState(digests[str(l)]["before"], tuple(digests[str(l)]["after"]),
                                tensors[f"layer.{l}.sample_index"], tensors[f"layer.{l}.before_values"],
                                tensors[f"layer.{l}.after_values"]) for l in layers}
        return Patch(updates=updates, editor=metadata["editor"], model_name=metadata["model"],
                     fingerprint=metadata["fingerprint"], architecture=metadata["architecture"],
                     requests=tuple(json.loads(metadata["requests"])),
                     config=json.loads(metadata["config"]), states=states, path=str(path))
    except (KeyError, ValueError, TypeError) as error:
        raise PatchError(f"{path}: a damaged patch file (missing or bad entry {error})") from None


# --- which weights a model has: the patch's "before", its "after", or neither ------------------------


def _check_shapes(handle: ModelHandle, patch: Patch) -> None:
    """Architecture, layers and matrix shapes: checked before any weight is read or touched."""
    adapter, model = handle.adapter, handle.model
    if adapter.name != patch.architecture:
        raise PatchError(f"{patch.label} was made for model {patch.model_name!r} ({patch.architecture} "
                         f"architecture), not for {handle.name!r} ({adapter.name}); refusing it, "
                         f"no weight was changed")
    for update in patch.updates:
        if not 0 <= update.layer < handle.num_layers:
            raise PatchError(f"{patch.label} changes layer {update.layer}, but {handle.name!r} has "
                             f"{handle.num_layers} layers; it was made for model {patch.model_name!r}")
        d_out, d_in = adapter.edit_weight_out_in(model, update.layer).shape
        if update.left.shape[0] != d_out or update.right.shape[0] != d_in:
            raise PatchError(f"{patch.label} was made for model {patch.model_name!r}: layer "
                             f"{update.layer} is a [{update.left.shape[0]}, {update.right.shape[0]}] "
                             f"matrix there, [{d_out}, {d_in}] in {handle.name!r}; refusing it, "
                             f"no weight was changed")


def _near(now: torch.Tensor, reference: torch.Tensor, state: LayerState, dtype: torch.dtype) -> float:
    """How far ``now`` is from ``reference`` in units of float rounding (<= 1: equal up to it),
    rounding being relative to the largest sampled entry before or after the patch."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    largest = max(float(state.before.abs().max()), float(state.after.abs().max()), 1e-12)
    scale = ROUNDING * eps * largest
    return float((now - reference).abs().max()) / scale if scale else float("inf")


def layer_state(handle: ModelHandle, patch: Patch, layer: int) -> str:
    """"before", "after" (bit for bit or up to float rounding) or "neither"."""
    weight = handle.adapter.edit_weight(handle.model, layer)
    state = patch.states[layer]
    digest = weight_digest(weight)
    if digest == state.before_sha256:
        return "before"
    if digest in state.after_sha256:
        return "after"
    if weight.shape.numel() != 0:
        now = _values(weight, state.index)
        to_before, to_after = (_near(now, state.before, state, weight.dtype),
                               _near(now, state.after, state, weight.dtype))
        if min(to_before, to_after) <= 1:
            return "before" if to_before <= to_after else "after"
    return "neither"


def _check_state(handle: ModelHandle, patch: Patch, wanted: str) -> None:
    _check_shapes(handle, patch)
    states = {layer: layer_state(handle, patch, layer) for layer in patch.layers}
    if all(state == wanted for state in states.values()):
        return
    action = "apply" if wanted == "before" else "remove"
    if all(state == "after" for state in states.values()):
        found = f"it is already applied to {handle.name!r} (the weights match the patched ones)"
    elif all(state == "before" for state in states.values()):
        found = (f"it is not applied to {handle.name!r} (the weights match the ones it was "
                 f"made from)")
    else:
        found = ", ".join(f"layer {layer} matches " + {"before": "the weights it was made from",
                                                        "after": "the patched weights",
                                                        "neither": "neither the weights it was made "
                                                                   "from nor the patched ones"}[state]
                          for layer, state in states.items())
        found = (f"in {handle.name!r} {found} (another model, or edited since; it was made for "
                 f"{patch.model_name!r})")
    raise PatchError(f"refusing to {action} {patch.label}: {found}; no weight was changed")


def apply_patch(handle: ModelHandle, patch: Patch) -> None:
    """Add the patch's deltas, only to the weights it was made from, and check the result against
    the patch's recorded "after" weights: a delta altered or damaged since the patch was written
    is refused, and the weights are put back as they were."""
    _check_state(handle, patch, "before")
    original = snapshot(handle, patch.layers)
    for update in patch.updates:
        add_update(handle, update)
    wrong = [layer for layer in patch.layers if layer_state(handle, patch, layer) != "after"]
    if wrong:
        restore(handle, original)
        raise PatchError(f"refusing {patch.label}: with its deltas added, layer(s) {wrong} do not "
                         f"match the patched weights it records (its \"after\" digest and sampled "
                         f"entries); the file was changed or damaged since it was written; no "
                         f"weight was changed")


def remove_patch(handle: ModelHandle, patch: Patch) -> RemovalReport:
    """Subtract the patch's deltas, only from patched weights; say how far the weights then are
    from the original."""
    _check_state(handle, patch, "after")
    for update in patch.updates:
        add_update(handle, update, sign=-1.0)
    identical, abs_error, rel_error = True, 0.0, 0.0
    for layer, state in patch.states.items():
        weight = handle.adapter.edit_weight(handle.model, layer)
        identical &= weight_digest(weight) == state.before_sha256
        error = (_values(weight, state.index).double() - state.before.double()).abs()
        abs_error = max(abs_error, float(error.max()))
        scale = float(state.before.double().abs().max().clamp(min=1e-12))
        rel_error = max(rel_error, float(error.max()) / scale)
    return RemovalReport(patch.layers, identical, abs_error, rel_error)
