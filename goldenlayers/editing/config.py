"""Typed hyperparameters of the editors, and how an editor's config is resolved.

Names follow EasyEdit's hparams files, so a value can be compared with theirs at a glance. The
effective configuration of an edit is resolved in this order, later winning (``resolve``):

    the config class's defaults  <  the table's row for (profile, model family, editor)
        (profiles.py)  <  the overrides given to ``get_editor``

Every config validates on construction; an unknown key is an error that names it and lists the
valid ones. ``from_overrides`` turns command-line ``key=value`` strings into typed values. The
profile is not a config field: it is ``get_editor``'s argument. Stored configs (study.json, patches,
``--json``) carry it beside the fields as ``"profile"`` (``config_record`` / ``read_config_record``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from goldenlayers.editing.profiles import check_profile, table_values
from goldenlayers.editing.errors import ConfigError
from goldenlayers.options import check_known_keys, parse_assignments


@dataclass(frozen=True)
class EditConfig:
    """What every editor here shares: context templates, the v* optimisation, statistics."""

    # Context templates: the bare prompt plus this many prefixes sampled from the model.
    n_context_templates: int = 5
    context_template_length: int = 10  # tokens per sampled prefix
    template_seed: int = 0
    # The value optimisation (docs/method.md, "The shared pieces").
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    v_loss_stop: float = 0.05  # stop early once the whole loss is below this (ROME's 5e-2)
    kl_prompt: str = "{} is a"
    kl_position: str = "subject_last"  # ROME's code; "prompt_last" = the token after "is a"
    fast: bool = True  # reuse the lower layers and prefix columns; vocabulary head only where needed
    # Second-moment statistics of the keys (covariance.py). As ROME's and EasyEdit's
    # mom2_n_samples, the sample size counts texts (corpus records), not tokens; each text is cut
    # to mom2_text_tokens tokens, a cap for memory (EasyEdit: the model's context length).
    mom2_n_samples: int = 1000  # ~130k tokens of the bundled WikiText-2 (EasyEdit: 100,000 texts)
    mom2_text_tokens: int = 256
    # Numerical guard: |u . k| below this fraction of |u| |k| is a near-zero denominator.
    denominator_tol: float = 1e-6

    KL_POSITIONS: ClassVar[tuple[str, ...]] = ("subject_last", "prompt_last")

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(self, f)
        positive = ("n_context_templates", "context_template_length", "v_num_grad_steps", "v_lr",
                    "clamp_norm_factor", "mom2_n_samples", "mom2_text_tokens")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("v_weight_decay", "kl_factor", "v_loss_stop", "denominator_tol"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.kl_position not in self.KL_POSITIONS:
            raise ConfigError(f"kl_position must be one of {', '.join(self.KL_POSITIONS)}, "
                              f"got {self.kl_position!r}")
        if self.kl_prompt.count("{}") != 1:
            raise ConfigError(f"kl_prompt must contain '{{}}' once for the subject, got {self.kl_prompt!r}")

    # --- construction from dictionaries and command-line strings --------------------------------

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def check_keys(cls, values: dict[str, Any]) -> None:
        check_known_keys(values, cls.keys(), f"{cls.__name__} key", ConfigError)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EditConfig:
        cls.check_keys(values)
        return cls(**values)

    @classmethod
    def from_overrides(cls, overrides: dict[str, str] | list[str]) -> dict[str, Any]:
        """Typed values from ``{"v_lr": "0.1"}`` or ``["v_lr=0.1"]`` (the CLI's ``--set``)."""
        overrides = parse_assignments(overrides, "editor setting", ConfigError)
        cls.check_keys(overrides)
        types = {f.name: f.type for f in fields(cls)}
        return {key: _parse(key, value, types[key]) for key, value in overrides.items()}

    def replace(self, **changes: Any) -> EditConfig:
        self.check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RomeConfig(EditConfig):
    """ROME and R-ROME: one rank-one update per request."""

    mom2_adjustment: bool = False  # use C = E[k k^T] (else the identity) in the update


@dataclass(frozen=True)
class RRomeConfig(RomeConfig):
    """R-ROME's key options, as its reference (EasyEdit's R_ROMEHyperParams): exactly one is on.
    Random-prefix keys (the default) use k*, the mean over templates, for u and for the key the
    matrix maps to v*; prompt keys use the bare prompt's key for both."""

    enable_prompt_keys: bool = False
    enable_random_prefix_keys: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.enable_prompt_keys == self.enable_random_prefix_keys:
            raise ConfigError("exactly one of enable_prompt_keys and enable_random_prefix_keys must "
                              "be true (ROME's original mix of both is the 'rome' editor)")


@dataclass(frozen=True)
class EmmetConfig(EditConfig):
    """EMMET: a batch in one equality-constrained least-squares update per layer of its window."""

    clamp_norm_factor: float = 0.75
    mom2_update_weight: float = 10_000.0  # C0 = this x E[k k^T] (docs/method.md, EMMET)
    update_norm_lambda: float = 0.0  # C0 += this x I (EasyEdit's update_norm_lambda)
    emmet_lambda: float = 0.1
    window: int = 1  # edits layers (layer - window + 1) .. layer; as EasyEdit's files (one layer)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mom2_update_weight > 0:
            raise ConfigError(f"mom2_update_weight must be positive, got {self.mom2_update_weight!r}")
        for name in ("emmet_lambda", "update_norm_lambda"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.window >= 1:
            raise ConfigError(f"window must be at least 1, got {self.window!r}")


@dataclass(frozen=True)
class MemitConfig(EditConfig):
    """MEMIT: the residual target of the last layer spread over a window of layers."""

    clamp_norm_factor: float = 0.75
    mom2_update_weight: float = 20_000.0
    window: int = 5  # edits layers (layer - window + 1) .. layer, clipped at 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mom2_update_weight > 0:
            raise ConfigError(f"mom2_update_weight must be positive, got {self.mom2_update_weight!r}")
        if not self.window >= 1:
            raise ConfigError(f"window must be at least 1, got {self.window!r}")


# --- resolving and storing ---------------------------------------------------------------------


def resolve(config_class: type[EditConfig], editor: str, profile: str, family: str,
            overrides: dict[str, Any]) -> EditConfig:
    """The effective config of ``editor`` under ``profile`` on a model of ``family``: the table's
    row (profiles.py) over the class defaults, then ``overrides`` (see the module doc)."""
    values = table_values(profile, family, editor)
    values.update(overrides)
    return config_class.from_dict(values)


def config_record(config: EditConfig, profile: str) -> dict[str, Any]:
    """What study.json, patches and ``--json`` store: the config's fields and the profile."""
    return {**config.to_dict(), "profile": profile}


def read_config_record(config_class: type[EditConfig],
                       record: dict[str, Any]) -> tuple[str, EditConfig]:
    """(profile, config) from a stored record; its ``"profile"`` key is the profile ("default"
    where absent), every other key a config field."""
    values = dict(record)
    profile = check_profile(str(values.pop("profile", "default")))
    return profile, config_class.from_dict(values)


# --- parsing --------------------------------------------------------------------------------------


def _parse(key: str, value: Any, annotation: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if annotation == "bool":
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes", "on")
        if annotation == "int":
            return int(value.replace("_", ""))
        if annotation == "float":
            return float(value)
    except ValueError:
        raise ConfigError(f"{key} expects a {annotation}, got {value!r}") from None
    return value


def _check_type(config: EditConfig, f: dataclasses.Field) -> None:
    value = getattr(config, f.name)
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(str(f.type))
    if expected is None:
        return
    wrong_bool = isinstance(value, bool) and f.type != "bool"
    if wrong_bool or not isinstance(value, expected):
        raise ConfigError(f"{f.name} expects a {f.type}, got {value!r}")
    if f.type == "float":
        object.__setattr__(config, f.name, float(value))
