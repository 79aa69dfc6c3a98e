"""Architecture adapters: where each architecture keeps the parts that editing and locating touch.

Differences between architectures are declared as data (module-name templates and one orientation
flag), looked up by the config's ``model_type``. Everything else in the package reaches into a model
only through an adapter, so supporting a new architecture is one new entry in ``ADAPTERS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from goldenlayers.errors import GoldenLayersError


class UnknownArchitectureError(GoldenLayersError):
    pass


class LayerOutOfRangeError(GoldenLayersError):
    pass


@dataclass(frozen=True)
class ArchitectureAdapter:
    """Module names of one architecture; ``{layer}`` in a template stands for the block index.

    ``edit_matrix`` is the MLP output projection that ROME-family editors rewrite. Its input is the
    key k (d_ff) and its output the value v (d_model). ``edit_matrix_transposed`` is true for GPT-2's
    Conv1D, which stores its weight as [d_in, d_out] instead of nn.Linear's [d_out, d_in].
    """

    name: str
    model_types: tuple[str, ...]
    blocks: str  # the ModuleList of transformer blocks
    mlp: str
    edit_matrix: str
    edit_matrix_transposed: bool
    embedding: str  # its output is what causal tracing corrupts (Gemma scales inside it)
    final_norm: str
    head: str
    base_model: str  # the decoder stack without the head: returns final-normed hidden states
    mlp_weight_names: tuple[str, ...]  # all matrices of one MLP, relative to ``mlp``
    # Named only for the hyperparameter files of other tools (editing/hparams_files.py): the
    # attention of a block, and the module whose ``.weight`` is the unembedding as EasyEdit's
    # files name it (GPT-2's name the tied input embedding, as its published files do).
    attn: str
    unembedding: str

    # --- module lookup -------------------------------------------------------------------------

    def num_layers(self, model: nn.Module) -> int:
        return len(self.module(model, self.blocks))

    def check_layer(self, model: nn.Module, layer: int) -> int:
        n = self.num_layers(model)
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < n:
            raise LayerOutOfRangeError(
                f"layer {layer!r} is out of range: this {self.name} model has {n} layers, "
                f"valid layers are 0..{n - 1}"
            )
        return layer

    def module(self, model: nn.Module, name: str) -> nn.Module:
        return model.get_submodule(name)

    def block_name(self, layer: int) -> str:
        return f"{self.blocks}.{layer}"

    def mlp_name(self, layer: int) -> str:
        return self.mlp.format(layer=layer)

    def edit_matrix_name(self, layer: int) -> str:
        return self.edit_matrix.format(layer=layer)

    def block(self, model: nn.Module, layer: int) -> nn.Module:
        return self.module(model, self.block_name(self.check_layer(model, layer)))

    def mlp_module(self, model: nn.Module, layer: int) -> nn.Module:
        return self.module(model, self.mlp_name(self.check_layer(model, layer)))

    def edit_module(self, model: nn.Module, layer: int) -> nn.Module:
        """The module whose forward computes v = W k; hook it for keys (input) and values (output)."""
        return self.module(model, self.edit_matrix_name(self.check_layer(model, layer)))

    def mlp_weights(self, model: nn.Module, layer: int) -> dict[str, nn.Parameter]:
        mlp = self.mlp_module(model, layer)
        return {name: mlp.get_submodule(name).weight for name in self.mlp_weight_names}

    # --- the edit matrix in one orientation ----------------------------------------------------

    def edit_weight(self, model: nn.Module, layer: int) -> nn.Parameter:
        """The stored parameter, in the module's own orientation (use for saving and restoring)."""
        return self.edit_module(model, layer).weight

    def edit_weight_out_in(self, model: nn.Module, layer: int) -> torch.Tensor:
        """W as [d_out, d_in] so that v = W @ k on every architecture; a view, so writes go through."""
        weight = self.edit_weight(model, layer)
        return weight.T if self.edit_matrix_transposed else weight

    def add_to_edit_weight(self, model: nn.Module, layer: int, delta_out_in: torch.Tensor) -> None:
        """W += delta, with delta given as [d_out, d_in] whatever the stored orientation."""
        with torch.no_grad():
            target = self.edit_weight_out_in(model, layer)
            target.add_(delta_out_in.to(device=target.device, dtype=target.dtype))

    def edit_bias(self, model: nn.Module, layer: int) -> torch.Tensor | None:
        return self.edit_module(model, layer).bias


_LLAMA_LIKE = dict(
    blocks="model.layers",
    mlp="model.layers.{layer}.mlp",
    edit_matrix="model.layers.{layer}.mlp.down_proj",
    edit_matrix_transposed=False,
    embedding="model.embed_tokens",
    final_norm="model.norm",
    head="lm_head",
    base_model="model",
    mlp_weight_names=("gate_proj", "up_proj", "down_proj"),
    attn="model.layers.{layer}.self_attn",
    unembedding="lm_head",
)

ADAPTERS: tuple[ArchitectureAdapter, ...] = (
    ArchitectureAdapter(
        name="gpt2",
        model_types=("gpt2",),
        blocks="transformer.h",
        mlp="transformer.h.{layer}.mlp",
        edit_matrix="transformer.h.{layer}.mlp.c_proj",
        edit_matrix_transposed=True,
        embedding="transformer.wte",
        final_norm="transformer.ln_f",
        head="lm_head",
        base_model="transformer",
        mlp_weight_names=("c_fc", "c_proj"),
        attn="transformer.h.{layer}.attn",
        unembedding="transformer.wte",
    ),
    ArchitectureAdapter(
        name="llama", model_types=("llama", "mistral", "qwen2", "qwen3"), **_LLAMA_LIKE
    ),
    ArchitectureAdapter(name="gemma", model_types=("gemma", "gemma2", "gemma3_text"), **_LLAMA_LIKE),
    # Gemma 3 from 4B up is multimodal: the text decoder sits under model.language_model.
    ArchitectureAdapter(
        name="gemma3-multimodal",
        model_types=("gemma3",),
        blocks="model.language_model.layers",
        mlp="model.language_model.layers.{layer}.mlp",
        edit_matrix="model.language_model.layers.{layer}.mlp.down_proj",
        edit_matrix_transposed=False,
        embedding="model.language_model.embed_tokens",
        final_norm="model.language_model.norm",
        head="lm_head",
        base_model="model.language_model",
        mlp_weight_names=("gate_proj", "up_proj", "down_proj"),
        attn="model.language_model.layers.{layer}.self_attn",
        unembedding="lm_head",
    ),
)


def adapter_for(model: nn.Module) -> ArchitectureAdapter:
    """The adapter registered for ``model.config.model_type``; an error lists what is supported."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            _check_modules_exist(adapter, model)
            return adapter
    supported = sorted(t for a in ADAPTERS for t in a.model_types)
    found = sorted({name.split(".")[0] for name, _ in model.named_modules() if name})
    raise UnknownArchitectureError(
        f"unknown architecture {type(model).__name__} (model_type={model_type!r}); "
        f"supported model types: {', '.join(supported)}; top-level modules found: {', '.join(found)}"
    )


def _check_modules_exist(adapter: ArchitectureAdapter, model: nn.Module) -> None:
    names = dict(model.named_modules())
    wanted = [adapter.blocks, adapter.embedding, adapter.final_norm, adapter.head,
              adapter.unembedding, adapter.edit_matrix.format(layer=0),
              adapter.attn.format(layer=0)]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise UnknownArchitectureError(
            f"{type(model).__name__} has model_type {model.config.model_type!r} but lacks the modules "
            f"the {adapter.name} adapter expects: {', '.join(missing)}; "
            f"modules found include: {', '.join(list(names)[1:12])}"
        )
