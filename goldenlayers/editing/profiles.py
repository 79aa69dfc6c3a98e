"""Profiles: named sets of hyperparameters. "default" is ours (faster); "easyedit" is EasyEdit's
published hparams for the model family, so a run reproduces EasyEdit's numbers at our speed.

EasyEdit's files (hparams/{ROME,R-ROME,EMMET,MEMIT}/{gpt2-xl,llama-7b}.yaml) give, for GPT-2 and
for LLaMA-style models (LLaMA, Gemma, SmolLM2, ...):

- the v* / z optimisation: 20 steps, v_weight_decay 0.5 (GPT-2) or 25 steps, 1e-3 (LLaMA); lr 0.5,
  KL factor 0.0625 on "{} is a" at the subject, clamp 4 (ROME, R-ROME; EMMET and MEMIT on LLaMA)
  or 0.75 (EMMET and MEMIT on GPT-2), stop below a loss of 0.05;
- context templates: ROME and R-ROME 20 + the bare prompt (EasyEdit samples 10 of 5 tokens and 10
  of 10; here all 20 have 10), EMMET and MEMIT 5 of 10 tokens + the bare prompt;
- statistics: mom2_n_samples 100,000 texts (the bundled WikiText-2 has 2,185: all are used, with a
  warning), each text whole (EasyEdit cuts at the context length; no bundled text is longer than
  549 GPT-2 tokens, so 1024 cuts none); mom2_adjustment true for ROME on GPT-2 only;
  mom2_update_weight 1 (EMMET), 20,000 / 15,000 (MEMIT, GPT-2 / LLaMA); EMMET's emmet_lambda 0.1
  and update_norm_lambda 0; EMMET and MEMIT edit a window of 5 layers;
- fluency: EasyEdit's sampled procedure (``evaluation_settings``).

A profile is chosen by the editor override ``profile`` (``--profile`` on the command line);
``resolve`` in config.py applies its values after the architecture and model defaults and before
any other override, and the effective config records the profile's name.
"""

from __future__ import annotations

from typing import Any

PROFILES = ("default", "easyedit")

_COMMON = dict(v_lr=0.5, kl_factor=0.0625, kl_prompt="{} is a", kl_position="subject_last",
               v_loss_stop=0.05, mom2_n_samples=100_000, mom2_text_tokens=1024)
_RANK_ONE = dict(_COMMON, n_context_templates=20, context_template_length=10, clamp_norm_factor=4.0)
_BATCH = dict(_COMMON, n_context_templates=5, context_template_length=10, window=5)

_GPT2 = dict(v_num_grad_steps=20, v_weight_decay=0.5)
_LLAMA = dict(v_num_grad_steps=25, v_weight_decay=1e-3)
_EASYEDIT: dict[str, dict[str, dict[str, Any]]] = {
    "gpt2": {
        "rome": dict(_RANK_ONE, **_GPT2, mom2_adjustment=True),
        "r-rome": dict(_RANK_ONE, **_GPT2, mom2_adjustment=False, enable_prompt_keys=False,
                       enable_random_prefix_keys=True),
        "emmet": dict(_BATCH, **_GPT2, clamp_norm_factor=0.75, mom2_update_weight=1.0,
                      update_norm_lambda=0.0, emmet_lambda=0.1),
        "memit": dict(_BATCH, **_GPT2, clamp_norm_factor=0.75, mom2_update_weight=20_000.0),
    },
    "llama": {
        "rome": dict(_RANK_ONE, **_LLAMA, mom2_adjustment=False),
        "r-rome": dict(_RANK_ONE, **_LLAMA, mom2_adjustment=False, enable_prompt_keys=False,
                       enable_random_prefix_keys=True),
        "emmet": dict(_BATCH, **_LLAMA, clamp_norm_factor=4.0, mom2_update_weight=1.0,
                      update_norm_lambda=0.0, emmet_lambda=0.1),
        "memit": dict(_BATCH, **_LLAMA, clamp_norm_factor=4.0, mom2_update_weight=15_000.0),
    },
}
_EASYEDIT_EVALUATION = {"fluency_procedure": "easyedit", "fluency_tokens": 100}


class ProfileError(ValueError):
    pass


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    return profile


def model_family(architecture: Any) -> str:
    """EasyEdit's family for an architecture name or a ModelHandle: "gpt2", else "llama"."""
    name = getattr(getattr(architecture, "adapter", None), "name", architecture)
    return "gpt2" if name == "gpt2" else "llama"


def profile_overrides(profile: str, editor: str, architecture: Any) -> dict[str, Any]:
    """The editor overrides of ``profile`` for ``editor`` ("rome", "r-rome", "emmet", "memit") on a
    model of ``architecture`` (its adapter name, or a ModelHandle), ``profile`` included, so a
    caller can merge them into its editor overrides (its own keys after them win)."""
    check_profile(profile)
    if profile == "default":
        return {"profile": "default"}
    values = _EASYEDIT[model_family(architecture)].get(editor.lower().replace("_", "-"), {})
    return {**values, "profile": profile}


def evaluation_settings(profile: str) -> dict[str, Any]:
    """The evaluation settings of ``profile`` (``evaluate`` keywords): EasyEdit's fluency for
    "easyedit", nothing for "default" (greedy fluency, our default)."""
    return dict(_EASYEDIT_EVALUATION) if check_profile(profile) == "easyedit" else {}
