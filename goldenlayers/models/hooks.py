"""The one hook primitive: capture inputs, outputs and output gradients of named modules, or edit
their outputs, for the duration of a ``with`` block.

Used by LGA (keys and output gradients of the edit matrix), causal tracing (patching MLP outputs),
the ROME value optimisation (adding delta at the subject token) and covariance statistics (keys,
stopping the forward early). Hooks are always removed in ``finally``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

EditFn = Callable[[str, torch.Tensor], torch.Tensor]


class StopForward(Exception):
    """Raised inside a hook to end a forward pass once the wanted activations are captured."""


@dataclass
class Trace:
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # first positional input
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    output_grads: dict[str, torch.Tensor] = field(default_factory=dict)  # dL/d(output)
    calls: dict[str, tuple[tuple, dict]] = field(default_factory=dict)  # (args, kwargs) of the call


def hidden_of(output) -> torch.Tensor:
    """A module's output tensor: decoder blocks return (hidden, ...) in some versions of
    transformers and the bare tensor in others; MLPs and matrices return the tensor."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output, hidden: torch.Tensor):
    """``output`` in its own form (tuple or tensor) with its tensor replaced by ``hidden``."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def trace(
    modules: Mapping[str, nn.Module],
    *,
    capture_inputs: bool = False,
    capture_outputs: bool = False,
    capture_output_grads: bool = False,
    capture_calls: bool = False,
    edit_output: EditFn | None = None,
    stop_after: str | None = None,
    detach: bool = True,
    on_input: Callable[[str, torch.Tensor], None] | None = None,
    on_output_grad: Callable[[str, torch.Tensor], None] | None = None,
) -> Iterator[Trace]:
    """Hook ``modules`` (name -> module) while the block runs.

    edit_output(name, output) returns the tensor the module passes on (called before capture, so
    captured outputs and gradients are those of the edited value). ``stop_after`` names a module
    after which the forward pass is abandoned; the ``StopForward`` it raises is swallowed here.
    With ``detach=False`` captured tensors stay in the autograd graph. ``capture_calls`` keeps each
    module's positional and keyword arguments as it was called (not detached), so the call can be
    replayed (models/partial.py re-runs the upper blocks of a decoder this way).
    ``on_input(name, input)`` and ``on_output_grad(name, grad)`` receive the same (detached) tensors
    as they arrive, for callers that reduce them on the fly instead of keeping them (LGA keeps only
    small Gram matrices of the keys, not the keys of every layer).
    """
    record = Trace()
    handles = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach() if detach else tensor

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output):
            if edit_output is not None:
                output = edit_output(name, output)
            if capture_inputs:
                record.inputs[name] = keep(args[0])
            if on_input is not None:
                on_input(name, args[0].detach())
            if capture_outputs:
                record.outputs[name] = keep(output)
            if capture_output_grads and output.requires_grad:
                output.register_hook(lambda grad: record.output_grads.__setitem__(name, grad.detach()))
            if on_output_grad is not None and output.requires_grad:
                output.register_hook(lambda grad: on_output_grad(name, grad.detach()))
            if name == stop_after:
                raise StopForward
            return output

        return hook

    try:
        for name, module in modules.items():
            if capture_calls:
                handles.append(module.register_forward_pre_hook(
                    lambda _, args, kwargs, name=name: record.calls.__setitem__(name, (args, dict(kwargs))),
                    with_kwargs=True))
            handles.append(module.register_forward_hook(make_hook(name)))
        try:
            yield record
        except StopForward:
            pass
    finally:
        for handle in handles:
            handle.remove()
