"""The editors' default hyperparameters: one table, indexed by (profile, model family, editor).

Profiles:

- "default" is ours, faster: 5 context templates, key statistics from 1,000 texts of 256 tokens,
  and on SmolLM2 R-ROME's loss falls in 15 steps at lr 1.0 (tuned on SmolLM2-135M, 8 CounterFact
  requests at layer 10: with lr 0.5 the loss needs ~20 of 25 steps to fall below 0.2; lr 1.0 gets
  there in ~10). Its values are those every study in results/ was run with (study.json).
- "easyedit" is EasyEdit's published hyperparameter files (hparams/<ALGORITHM>/<model>.yaml at
  zjunlp/EasyEdit @14cea82), so a run reproduces EasyEdit's settings at our speed.
  ``EASYEDIT_FILES`` names the file each family's values come from: GPT-2 from the gpt2-xl files,
  LLaMA-style models from the llama-7b files. EasyEdit publishes no Gemma or SmolLM2 files; as
  LLaMA-style models (pre-norm blocks, gated MLP) they take the llama-7b values. Every value a file
  shares with our configs (same key) is the file's, and the window of EMMET and MEMIT is the length
  of its ``layers``; tests/test_profiles.py checks this against the parsed files. Where the files
  are silent the values follow EasyEdit's code: ROME and R-ROME use 20 context templates + the bare
  prompt (EasyEdit samples 10 of 5 tokens and 10 of 10; here all 20 have 10), EMMET and MEMIT 5 of
  10 tokens; each statistics text is cut at 1024 tokens (EasyEdit: the context length).

A model's family is its adapter's (``model_family``), except models tuned by name (SmolLM2-135M).
An editor's resolved config is: its config class's defaults < the table's row < the overrides
given to ``get_editor`` (config.py, ``resolve``). The profile also names how fluency is measured
(``FLUENCY_PROCEDURES``): the caller passes that to the cell runner.
"""

from __future__ import annotations

from typing import Any

from goldenlayers.editing.errors import ConfigError

PROFILES = ("default", "easyedit")
EDITOR_NAMES = ("rome", "r-rome", "emmet", "memit")
MODEL_FAMILIES = ("gpt2", "llama", "gemma", "smollm2")

# A model's family by its adapter's name (models/adapters.py), except models tuned by name.
FAMILY_OF_ADAPTER = {"gpt2": "gpt2", "llama": "llama", "gemma": "gemma",
                     "gemma3-multimodal": "gemma"}
FAMILY_OF_MODEL = {"smollm2-135m": "smollm2"}

# How each profile measures fluency (evaluate.fluency): ours greedy, EasyEdit's sampled.
FLUENCY_PROCEDURES = {"default": "greedy", "easyedit": "easyedit"}

# EasyEdit's file behind each family's "easyedit" values: hparams/<EASYEDIT_ALGORITHMS>/<this>.yaml
EASYEDIT_FILES = {"gpt2": "gpt2-xl", "llama": "llama-7b", "gemma": "llama-7b",
                  "smollm2": "llama-7b"}
EASYEDIT_ALGORITHMS = {"rome": "ROME", "r-rome": "R-ROME", "emmet": "EMMET", "memit": "MEMIT"}


def _rows(profile: str, family: str, shared: dict[str, Any],
          editors: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(profile, family, editor): {**shared, **values} for editor, values in editors.items()}


# --- "default": ours --------------------------------------------------------------------------

_GPT2_STEPS = dict(v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, kl_factor=0.0625)
_LLAMA_STEPS = dict(v_num_grad_steps=25, v_lr=0.5, v_weight_decay=1e-3, kl_factor=0.0625)
_SMOLLM2_STEPS = dict(_LLAMA_STEPS, v_num_grad_steps=15, v_lr=1.0)
_RANK_ONE = dict(clamp_norm_factor=4.0, mom2_adjustment=False)


def _ours(clamp: float, memit_weight: float) -> dict[str, dict[str, Any]]:
    return {"rome": _RANK_ONE, "r-rome": _RANK_ONE,
            "emmet": dict(clamp_norm_factor=clamp, mom2_update_weight=10_000.0, emmet_lambda=0.1),
            "memit": dict(clamp_norm_factor=clamp, mom2_update_weight=memit_weight, window=5)}


# --- "easyedit": EasyEdit's published files (EASYEDIT_FILES) ----------------------------------

_EASYEDIT_COMMON = dict(kl_prompt="{} is a", kl_position="subject_last", v_loss_stop=0.05,
                        mom2_n_samples=100_000, mom2_text_tokens=1024)
_EASYEDIT_RANK_ONE = dict(n_context_templates=20, context_template_length=10,
                          clamp_norm_factor=4.0, mom2_adjustment=False)
_EASYEDIT_BATCH = dict(n_context_templates=5, context_template_length=10)


def _easyedit(clamp: float, emmet_weight: float, memit_weight: float) -> dict[str, dict[str, Any]]:
    return {"rome": _EASYEDIT_RANK_ONE,
            "r-rome": dict(_EASYEDIT_RANK_ONE, enable_prompt_keys=False,
                           enable_random_prefix_keys=True),
            "emmet": dict(_EASYEDIT_BATCH, clamp_norm_factor=clamp, mom2_update_weight=emmet_weight,
                          update_norm_lambda=0.0, emmet_lambda=0.1, window=1),
            "memit": dict(_EASYEDIT_BATCH, clamp_norm_factor=clamp, mom2_update_weight=memit_weight,
                          window=5)}


_EASYEDIT_GPT2 = _easyedit(clamp=0.75, emmet_weight=10_000.0, memit_weight=20_000.0)  # gpt2-xl
_EASYEDIT_LLAMA = _easyedit(clamp=4.0, emmet_weight=100_000.0, memit_weight=15_000.0)  # llama-7b

DEFAULTS: dict[tuple[str, str, str], dict[str, Any]] = {
    **_rows("default", "gpt2", _GPT2_STEPS, _ours(clamp=0.75, memit_weight=20_000.0)),
    **_rows("default", "llama", _LLAMA_STEPS, _ours(clamp=4.0, memit_weight=15_000.0)),
    **_rows("default", "gemma", _LLAMA_STEPS, _ours(clamp=4.0, memit_weight=15_000.0)),
    **_rows("default", "smollm2", _SMOLLM2_STEPS, _ours(clamp=4.0, memit_weight=15_000.0)),
    **_rows("easyedit", "gpt2", dict(_EASYEDIT_COMMON, **_GPT2_STEPS), _EASYEDIT_GPT2),
    **{key: values for family in ("llama", "gemma", "smollm2")
       for key, values in _rows("easyedit", family, dict(_EASYEDIT_COMMON, **_LLAMA_STEPS),
                                _EASYEDIT_LLAMA).items()},
}


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    return profile


def model_family(adapter_name: str, model_name: str | None = None) -> str:
    """The table's family of a model: by its name where tuned for it, else by its adapter."""
    if model_name in FAMILY_OF_MODEL:
        return FAMILY_OF_MODEL[model_name]
    if adapter_name not in FAMILY_OF_ADAPTER:
        raise ConfigError(f"no editor defaults for architecture {adapter_name!r}; families: "
                           f"{', '.join(FAMILY_OF_ADAPTER)}")
    return FAMILY_OF_ADAPTER[adapter_name]


def table_values(profile: str, family: str, editor: str) -> dict[str, Any]:
    """The table's row for (profile, model family, editor): the values over the config class's
    defaults (a copy)."""
    key = (check_profile(profile), family, editor)
    if key not in DEFAULTS:
        raise ConfigError(f"no {profile} defaults for editor {editor!r} on model family "
                           f"{family!r}; families: {', '.join(MODEL_FAMILIES)}")
    return dict(DEFAULTS[key])


def easyedit_file(family: str, editor: str) -> str:
    """The EasyEdit file the "easyedit" row of (family, editor) comes from."""
    return f"hparams/{EASYEDIT_ALGORITHMS[editor]}/{EASYEDIT_FILES[family]}.yaml"


def fluency_procedure(profile: str) -> str:
    """How ``profile`` measures fluency: the ``fluency_procedure`` to give ``evaluate`` and the
    cell runner."""
    return FLUENCY_PROCEDURES[check_profile(profile)]
