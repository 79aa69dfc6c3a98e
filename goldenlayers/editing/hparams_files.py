"""The hyperparameter files of EasyEdit (YAML) and of the ROME/MEMIT research code (JSON).

Both tools build a dataclass from the file with ``cls(**config)``, so a file must hold every
required key of the algorithm and no other key. The field lists, with their source commits, are
``hparams_keys.json`` beside this module (a copy of the shared ``keys.json``).

Writing (``export_values``): our resolved editor config, the layers and the architecture's module
templates as the tool's keys. Reading (``read_hparams`` + ``imported_settings``): each key is one of

- a config key: copied to our editor config's field of the same name (``CONFIG_KEYS``);
- a key read specially: ``layers`` (the edited layer, and the window of EMMET and MEMIT),
  ``v_loss_layer`` (must be the last layer: our value loss reads the model's output),
  ``context_template_length_params``, the module templates (``TEMPLATE_KEYS``), ``alg_name``;
- a key with one supported value (``FIXED_VALUES``); another value is refused by name;
- a harmless key, named as ignored with why (``IGNORED_KEYS``);
- anything else: refused by name, as the tool's own loader refuses it.

The functions are pure: the model's modules come in as a set of names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from goldenlayers.editing.config import EditConfig
from goldenlayers.errors import GoldenLayersError
from goldenlayers.models.adapters import ArchitectureAdapter

KEYS_FILE = Path(__file__).with_name("hparams_keys.json")

TOOLS = ("easyedit", "rome")  # rome: kmeng01/rome and kmeng01/memit (their hparams/*.json)
TOOL_NAMES = {"easyedit": "EasyEdit", "rome": "the ROME/MEMIT research code"}
# Our editor names -> the tools' algorithm names. AlphaEdit is written, never run here.
ALGORITHMS = {"rome": "ROME", "r-rome": "R-ROME", "emmet": "EMMET", "memit": "MEMIT",
              "alphaedit": "AlphaEdit"}
WINDOW_ALGORITHMS = ("EMMET", "MEMIT", "AlphaEdit")  # layers: a window, edited bottom to top
RUNNABLE = ("ROME", "R-ROME", "EMMET", "MEMIT")

CONFIG_KEYS = ("v_num_grad_steps", "v_lr", "v_weight_decay", "clamp_norm_factor", "kl_factor",
               "mom2_adjustment", "mom2_update_weight", "mom2_n_samples", "emmet_lambda",
               "update_norm_lambda", "enable_prompt_keys", "enable_random_prefix_keys")
TEMPLATE_KEYS = ("rewrite_module_tmp", "layer_module_tmp", "mlp_module_tmp", "attn_module_tmp",
                 "ln_f_module", "lm_head_module")
FIXED_VALUES = {"fact_token": "subject_last", "layer_selection": "all",
                "original_implementation": False}
IGNORED_KEYS = {
    "model_name": "the model is --model",
    "device": "the device is --device",
    "stats_dir": "key statistics are cached in the goldenlayers cache folder",
    "mom2_dataset": "key statistics come from the bundled WikiText-2",
    "mom2_dtype": "key statistics are summed in float64",
    "max_length": "prompts are checked against the model's own context length",
    "model_parallel": "the model runs on one device",
    "fp16": "the dtype is --dtype",
    "batch_size": "the command sets how many requests one edit takes",
}
# Keys a window algorithm's code never reads (EasyEdit's and MEMIT's compute_u is ROME's only).
UNREAD_BY_WINDOW = {"mom2_adjustment": "MEMIT's and EMMET's code does not read it"}
# What EMMET's and MEMIT's code hard-codes (memit_main.get_context_templates: [(10, 5)]).
WINDOW_TEMPLATES = {"n_context_templates": 5, "context_template_length": 10}
# EasyEdit's published ROME and R-ROME files: 10 templates of 5 tokens and 10 of 10.
EASYEDIT_CONTEXT_TEMPLATES = [[5, 10], [10, 10]]
# Values of keys our config has no field for, as EasyEdit's files publish them.
WRITTEN_VALUES = {"fact_token": "subject_last", "layer_selection": "all", "device": 0,
                  "stats_dir": "./data/stats", "mom2_dataset": "wikipedia", "mom2_dtype": "float32",
                  "nullspace_threshold": 0.02, "P_loc": "./null_space_project.pt",
                  "mom2_adjustment": True}
ALPHAEDIT_L2 = {"gpt2": 10.0, "llama": 1.0}  # EasyEdit's gpt2-xl and llama3-8b files
FIRST_KEYS = ("alg_name", "model_name", "stats_dir", "device")  # EasyEdit's files start so


class HparamsError(GoldenLayersError):
    pass


@dataclass(frozen=True)
class FieldSpec:
    """One dataclass field of a tool's hyperparameter class."""

    name: str
    type: str  # as keys.json writes it: "int", "List[int]", "Literal['all', 'random']", ...
    required: bool
    default: Any = None


@dataclass(frozen=True)
class HparamsFile:
    """A parsed hyperparameter file: its keys checked against the tool's class, values typed."""

    path: str
    tool: str  # "easyedit" or "rome"
    algorithm: str  # "ROME", "R-ROME", "EMMET", "MEMIT", "AlphaEdit"
    values: dict[str, Any]

    @property
    def layers(self) -> list[int]:
        return list(self.values["layers"])

    @property
    def editor(self) -> str:
        """Our editor's name for the file's algorithm."""
        return editor_for(self.algorithm)


@dataclass(frozen=True)
class ImportedSettings:
    """What a file asks our editor to do: edit at ``layer`` (the window's top) with ``overrides``."""

    editor: str  # our editor's name
    layer: int
    overrides: dict[str, Any]  # our config's fields
    ignored: tuple[str, ...]  # "key (why)" for each harmless key we do not use
    notes: tuple[str, ...] = ()


# --- the tools' field lists -----------------------------------------------------------------------


@cache
def _keys_table() -> dict[str, Any]:
    return json.loads(KEYS_FILE.read_text(encoding="utf-8"))


def allowed_fields(tool: str, algorithm: str) -> tuple[FieldSpec, ...]:
    """The fields of ``algorithm``'s hyperparameter class in ``tool``, required ones first."""
    table = _keys_table()["easyedit" if tool == "easyedit" else "rome_memit_repos"]["algorithms"]
    if algorithm not in table:
        raise HparamsError(f"{TOOL_NAMES[tool]} has no {algorithm} hyperparameter file; it has "
                           f"{', '.join(table)}")
    spec = table[algorithm]
    return (tuple(FieldSpec(name, kind, True) for name, kind in spec["required"])
            + tuple(FieldSpec(name, kind, False, default)
                    for name, (kind, default) in spec["optional"].items()))


def algorithm_for(editor: str) -> str:
    key = editor.lower().replace("_", "-")
    if key not in ALGORITHMS:
        raise HparamsError(f"no hyperparameter file for editor {editor!r}; editors: "
                           f"{', '.join(ALGORITHMS)}")
    return ALGORITHMS[key]


def editor_for(algorithm: str) -> str:
    return {name: editor for editor, name in ALGORITHMS.items()}[algorithm]


def tool_for_path(path: str | Path, export_format: str | None = None) -> str:
    """The tool a file is for: ``export_format`` ("easyedit" or "rome"), else the extension
    (.yaml/.yml EasyEdit, .json the ROME/MEMIT code); a contradiction is refused."""
    suffix = Path(path).suffix.lower()
    by_suffix = {".yaml": "easyedit", ".yml": "easyedit", ".json": "rome"}.get(suffix)
    if export_format is not None and export_format not in TOOLS:
        raise HparamsError(f"unknown --export-format {export_format!r}; formats: {', '.join(TOOLS)}")
    if export_format and by_suffix and export_format != by_suffix:
        raise HparamsError(f"{path}: --export-format {export_format} writes "
                           f"{'YAML (.yaml)' if export_format == 'easyedit' else 'JSON (.json)'}, "
                           f"not a {suffix} file")
    if not (export_format or by_suffix):
        raise HparamsError(f"{path}: name a .yaml (EasyEdit) or .json (ROME/MEMIT code) file, or "
                           f"give --export-format")
    return export_format or by_suffix


# --- writing --------------------------------------------------------------------------------------


def module_templates(adapter: ArchitectureAdapter) -> dict[str, str]:
    """The architecture's module names as the tools' templates ("{}" for the layer)."""
    named = {"rewrite_module_tmp": adapter.edit_matrix, "layer_module_tmp": adapter.blocks + ".{layer}",
             "mlp_module_tmp": adapter.mlp, "attn_module_tmp": adapter.attn,
             "ln_f_module": adapter.final_norm, "lm_head_module": adapter.unembedding}
    return {key: name.replace("{layer}", "{}") for key, name in named.items()}


def context_template_params(config: EditConfig) -> list[list[int]]:
    """ROME's [[tokens, count], ...] for our config's templates: EasyEdit's published value where
    it reads back as ours (20 of 10 tokens, the easyedit profile), else [[length, n]]."""
    if context_templates_of(EASYEDIT_CONTEXT_TEMPLATES) == (config.n_context_templates,
                                                            config.context_template_length):
        return [list(pair) for pair in EASYEDIT_CONTEXT_TEMPLATES]
    return [[config.context_template_length, config.n_context_templates]]


def easyedit_family(adapter_name: str) -> str:
    """The family of EasyEdit's files a model takes values from: GPT-2's, else LLaMA's."""
    return "gpt2" if adapter_name == "gpt2" else "llama"


def context_templates_of(params: list[list[int]]) -> tuple[int, int]:
    """(count, tokens) of our one-length templates for ROME's [[tokens, count], ...]: every
    template, at the longest length."""
    return sum(count for _, count in params), max(length for length, _ in params)


def export_values(tool: str, algorithm: str, config: EditConfig, layers: list[int],
                  adapter: ArchitectureAdapter, num_layers: int, model_name: str,
                  family: str) -> dict[str, Any]:
    """The file's keys and values: exactly the fields of the tool's class for ``algorithm``."""
    fields = allowed_fields(tool, algorithm)
    known = dict(WRITTEN_VALUES, **module_templates(adapter), layers=list(layers),
                 v_loss_layer=num_layers - 1, model_name=model_name, alg_name=algorithm,
                 context_template_length_params=context_template_params(config),
                 L2=ALPHAEDIT_L2[family])
    if algorithm not in WINDOW_ALGORITHMS:
        known.pop("mom2_adjustment")  # ROME's own setting, from the config
    config_values = {key: getattr(config, key) for key in CONFIG_KEYS if key in config.keys()}
    values = {}
    for spec in fields:
        if spec.name in config_values:
            values[spec.name] = config_values[spec.name]
        elif spec.name in known:
            values[spec.name] = known[spec.name]
        elif not spec.required:
            values[spec.name] = spec.default
        else:  # a field the tables above do not cover: a gap here, not the user's doing
            raise HparamsError(f"no value for {algorithm}'s required key {spec.name!r}")
    first = [key for key in FIRST_KEYS if key in values]
    return {key: values[key] for key in first + [k for k in values if k not in first]}


def unwritable_settings(algorithm: str, config: EditConfig) -> list[str]:
    """Our settings the file cannot carry for ``algorithm`` (a note for the user)."""
    if algorithm not in WINDOW_ALGORITHMS:
        return []
    return [f"{key} = {getattr(config, key)} (the {algorithm} code uses {value})"
            for key, value in WINDOW_TEMPLATES.items() if getattr(config, key) != value]


def window_layers(ranking: list[int], golden: int, size: int, num_layers: int) -> list[int]:
    """The contiguous window of ``size`` layers (at most the model's) that holds ``golden``, lies
    inside the model and has the best ranks in ``ranking`` (the locate run's kept layers, best
    first; a layer not in it counts as worst). Ties: the window ending at ``golden``, as
    ``goldenlayers edit --layer`` edits, then the deeper one."""
    size = min(size, num_layers)
    rank = {layer: position for position, layer in enumerate(ranking)}

    def cost(start: int) -> tuple[int, int, int]:
        total = sum(rank.get(layer, len(ranking)) for layer in range(start, start + size))
        return total, start + size - 1 != golden, -start

    starts = range(max(0, golden - size + 1), min(golden, num_layers - size) + 1)
    start = min(starts, key=cost)
    return list(range(start, start + size))


# --- reading --------------------------------------------------------------------------------------


def parse_text(path: str | Path, text: str) -> dict[str, Any]:
    """The file's mapping: YAML for .yaml/.yml, JSON for .json."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise HparamsError(f"{path}: a hyperparameter file is .yaml, .yml or .json")
    try:
        values = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise HparamsError(f"{path}: not valid {'JSON' if suffix == '.json' else 'YAML'}: "
                           f"{' '.join(str(error).split())[:200]}") from None
    if not isinstance(values, dict):
        raise HparamsError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
    return values


def read_hparams(path: str | Path, text: str | None = None) -> HparamsFile:
    """A file checked as its tool's loader would: every required key, no other key, each value of
    its field's type ("5e-1" as EasyEdit's files write floats is read as 0.5)."""
    text = Path(path).read_text(encoding="utf-8") if text is None else text
    values = parse_text(path, text)
    tool = "easyedit" if "alg_name" in values else "rome"
    if tool == "easyedit":
        algorithm = values["alg_name"]
        if algorithm not in ALGORITHMS.values():
            raise HparamsError(f"{path}: alg_name {algorithm!r} is not one of "
                               f"{', '.join(ALGORITHMS.values())}")
    elif Path(path).suffix.lower() != ".json":
        raise HparamsError(f"{path}: an EasyEdit file needs alg_name")
    else:  # the research code's files say nothing of their algorithm; MEMIT's have its weight
        algorithm = "MEMIT" if "mom2_update_weight" in values else "ROME"
    fields = {spec.name: spec for spec in allowed_fields(tool, algorithm)}
    where = f"{path} ({TOOL_NAMES[tool]}, {algorithm})"
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise HparamsError(f"{where}: unknown key {unknown[0]!r} (its loader would refuse it "
                           f"too); valid keys: {', '.join(fields)}")
    missing = [name for name, spec in fields.items() if spec.required and name not in values]
    if missing:
        raise HparamsError(f"{where}: required key {missing[0]!r} is missing")
    typed = {key: typed_value(where, fields[key], value) for key, value in values.items()}
    return HparamsFile(str(path), tool, algorithm, typed)


def typed_value(where: str, spec: FieldSpec, value: Any) -> Any:
    """``value`` as ``spec``'s type, or an error naming the key."""
    kind = spec.type
    ok = True
    if kind == "float" and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            ok = False
    if kind == "float":
        ok = ok and isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "List[int]":
        ok = isinstance(value, list) and all(_is_int(v) for v in value)
    elif kind == "List[List[int]]":
        ok = (isinstance(value, list) and value and all(
            isinstance(pair, list) and len(pair) == 2 and all(_is_int(v) and v > 0 for v in pair)
            for pair in value))
    elif kind.startswith("Literal["):
        ok = value in [choice.strip(" '") for choice in kind[8:-1].split(",")]
    if not ok:
        raise HparamsError(f"{where}: {spec.name} expects {kind}, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def imported_settings(hparams: HparamsFile, num_layers: int,
                      config_keys: tuple[str, ...]) -> ImportedSettings:
    """Our editor, layer and config overrides for a checked file; ``config_keys``: the fields of
    our editor's config. A value we cannot honour is refused naming its key."""
    where = f"{hparams.path} ({hparams.algorithm})"
    if hparams.algorithm not in RUNNABLE:
        raise HparamsError(f"{where}: goldenlayers has no {hparams.algorithm} editor (it writes "
                           f"{hparams.algorithm} files, for EasyEdit, but runs "
                           f"{', '.join(RUNNABLE)})")
    values = hparams.values
    layer, window = _layer_and_window(where, hparams, num_layers)
    if values["v_loss_layer"] != num_layers - 1:
        raise HparamsError(f"{where}: v_loss_layer {values['v_loss_layer']} is not this model's "
                           f"last layer {num_layers - 1}: our value loss reads the model's output")
    for key, supported in FIXED_VALUES.items():
        if key in values and values[key] != supported:
            raise HparamsError(f"{where}: {key} {values[key]!r} is not supported; goldenlayers' "
                               f"editors use {supported!r}")
    overrides: dict[str, Any] = {}
    ignored = [f"{key} ({why})" for key, why in IGNORED_KEYS.items() if key in values]
    for key in CONFIG_KEYS:
        if key not in values:
            continue
        if key in config_keys:
            overrides[key] = values[key]
        else:
            ignored.append(f"{key} ({UNREAD_BY_WINDOW[key]})")
    notes = []
    if hparams.algorithm in WINDOW_ALGORITHMS:
        overrides.update(WINDOW_TEMPLATES, window=window)
    else:
        params = values["context_template_length_params"]
        count, length = context_templates_of(params)
        overrides.update(n_context_templates=count, context_template_length=length)
        if len({tokens for tokens, _ in params}) > 1:
            notes.append(f"context_template_length_params {params}: {count} templates of "
                         f"{length} tokens (goldenlayers samples every template at one length)")
    return ImportedSettings(editor_for(hparams.algorithm), layer, overrides, tuple(ignored),
                            tuple(notes))


def _layer_and_window(where: str, hparams: HparamsFile, num_layers: int) -> tuple[int, int]:
    """(the layer to edit at, the window's size): a window is edited at its top layer."""
    layers = hparams.layers
    if not layers:
        raise HparamsError(f"{where}: layers is empty")
    outside = [layer for layer in layers if not 0 <= layer < num_layers]
    if outside:
        raise HparamsError(f"{where}: layers {layers}: layer {outside[0]} is out of range, this "
                           f"model has {num_layers} layers (0..{num_layers - 1})")
    if hparams.algorithm not in WINDOW_ALGORITHMS and len(layers) != 1:
        raise HparamsError(f"{where}: layers {layers}: {hparams.algorithm} edits one layer here")
    if sorted(layers) != list(range(min(layers), max(layers) + 1)):
        raise HparamsError(f"{where}: layers {layers}: goldenlayers edits a contiguous window of "
                           f"layers, listed once each")
    return max(layers), len(layers)


def check_templates(hparams: HparamsFile, adapter: ArchitectureAdapter, modules: set[str],
                    tied_heads: set[str]) -> None:
    """Refuse a template that names no module of the model (naming the modules that exist) or
    another module than the one our editors use. ``modules``: the model's module names;
    ``tied_heads``: the modules whose weight is the model's unembedding."""
    ours = module_templates(adapter)
    where = f"{hparams.path} ({hparams.algorithm})"
    for key in TEMPLATE_KEYS:
        template = hparams.values[key]
        names = [template.format(layer) for layer in hparams.layers] if "{}" in template else [template]
        absent = [name for name in names if name not in modules]
        if absent:
            raise HparamsError(f"{where}: {key} {template!r} names no module of this model "
                               f"({absent[0]}); its modules: {', '.join(existing_templates(adapter, modules))}")
        same = (template == ours[key] or key == "attn_module_tmp"
                or (key == "lm_head_module" and template in tied_heads))
        if not same:
            raise HparamsError(f"{where}: {key} {template!r} is a module of this model, but "
                               f"goldenlayers' editors use {ours[key]!r}")


def existing_templates(adapter: ArchitectureAdapter, modules: set[str], shown: int = 40) -> list[str]:
    """The model's module names with block 0's written as templates ("model.layers.{}.mlp"), the
    other blocks' left out: what a template may name."""
    block = adapter.blocks + ".0"
    other_blocks = adapter.blocks + "."
    names = []
    for name in sorted(modules):
        if name == block or name.startswith(block + "."):
            names.append(adapter.blocks + ".{}" + name[len(block):])
        elif name and not name.startswith(other_blocks):
            names.append(name)
    return names[:shown] + ([f"... ({len(names) - shown} more)"] if len(names) > shown else [])
