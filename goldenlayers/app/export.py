"""Hand a located layer over to EasyEdit or the ROME/MEMIT code (``locate --export``), and read
their hyperparameter files back for our editors (``edit --hparams``, ``locate --hparams``).

The file formats are editing/hparams_files.py; here: the editor settings, the locate run's
provenance and the model's modules are gathered, and the files written (atomically).
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from goldenlayers.app.render import stability_line
from goldenlayers.editing import EDITORS, EditConfig, get_editor
from goldenlayers.editing.hparams_files import (TOOL_NAMES, WINDOW_ALGORITHMS, HparamsError,
                                                HparamsFile, ImportedSettings, algorithm_for,
                                                allowed_fields, check_templates, easyedit_family,
                                                export_values, imported_settings, read_hparams,
                                                tool_for_path, unwritable_settings, window_layers)
from goldenlayers.engine.ranking import rank_layers
from goldenlayers.locate.base import LayerScores
from goldenlayers.models.handle import ModelHandle
from goldenlayers.files.outputs import check_output_path, write_output_json, write_output_text

SIDECAR_SUFFIX = ".provenance.json"


# --- the two seams to code other work is changing -------------------------------------------------


def resolved_config(handle: ModelHandle, editor: str, profile: str = "default",
                    overrides: dict[str, Any] | None = None) -> EditConfig:
    """Our editor's effective settings for the model under ``profile``: the one call into the
    editor settings. AlphaEdit, which is only written, takes MEMIT's (it is MEMIT's update with
    a null-space projection, and EasyEdit's AlphaEdit files share MEMIT's values)."""
    name = "memit" if editor.lower() == "alphaedit" else editor
    return _editor(name, profile, overrides or {}).config_for(handle)


def _editor(name: str, profile: str, overrides: dict[str, Any]):
    """The editor with ``profile``'s settings under ``overrides``."""
    return get_editor(name, profile=profile, **overrides)


@dataclass(frozen=True)
class Provenance:
    """How the exported layer was found: what a file's comments (or its sidecar) say."""

    method: str
    strategy: str | None
    reading: str | None
    dataset: str
    proxy_requests: int
    request_ids: list[str]
    seed: int
    stability: str | None  # the stability line as `locate` prints it
    golden_layer: int
    locator_settings: dict[str, Any]
    profile: str
    goldenlayers_version: str
    date: str  # UTC, ISO 8601
    notes: list[str] = field(default_factory=list)


def provenance_of(scores: LayerScores, *, dataset: str, seed: int, profile: str) -> Provenance:
    """The provenance of a locate run: the one place a ``LayerScores`` is read for it."""
    if scores.golden_layer is None:
        raise HparamsError(f"--export needs a golden layer, and {scores.method} named none here")
    stability = (stability_line(scores.stability, len(scores.request_ids))
                 if scores.stability else None)
    trials = getattr(scores, "trials", None)  # the staged locate's trial edits
    strategy = (f"{trials.strategy}: {trials.edits} trial edits, by {trials.by}" if trials
                else scores.settings.get("strategy"))
    return Provenance(
        method=scores.method, strategy=strategy, reading=scores.reading,
        dataset=dataset, proxy_requests=len(scores.request_ids),
        request_ids=[str(i) for i in scores.request_ids], seed=seed, stability=stability,
        golden_layer=scores.golden_layer, locator_settings=dict(scores.settings), profile=profile,
        goldenlayers_version=_version(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _version() -> str:
    try:
        return metadata.version("goldenlayers")
    except metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


# --- export ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportPlan:
    """An export checked before any work: the file, its tool and algorithm."""

    path: Path
    tool: str
    algorithm: str

    @property
    def sidecar(self) -> Path | None:
        """JSON files take no comments: their provenance goes beside them."""
        return Path(str(self.path) + SIDECAR_SUFFIX) if self.tool == "rome" else None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sidecar: Path | None
    layers: list[int]
    notes: list[str]


def plan_export(path: str, export_format: str | None, editor: str,
                overwrite: bool = False) -> ExportPlan:
    """Refuse, before any work, a file that cannot be written (one goldenlayers did not write,
    unless ``overwrite``) or an editor its tool lacks."""
    tool = tool_for_path(path, export_format)
    algorithm = algorithm_for(editor)
    allowed_fields(tool, algorithm)  # names the tool's algorithms if it has no such file
    plan = ExportPlan(check_output_path(path, option="--export", overwrite=overwrite), tool,
                      algorithm)
    if plan.sidecar:
        check_output_path(plan.sidecar, option="--export (its provenance file)",
                          overwrite=overwrite)
    return plan


def export_layers(scores: LayerScores, algorithm: str, config: EditConfig) -> tuple[list[int], list[str]]:
    """The file's ``layers``: the golden layer, or for a window editor the window (of the
    config's size) that the locate run ranks best among those holding it; and notes."""
    golden, count = scores.golden_layer, scores.num_layers
    if algorithm not in WINDOW_ALGORITHMS:
        return [golden], []
    size = getattr(config, "window", 1)
    layers = window_layers(measured_ranking(scores), golden, size, count)
    notes = [f"window of {size} layers cut to the model's {count}"] if size > count else []
    return layers, notes


def measured_ranking(scores: LayerScores) -> list[int]:
    """The layers the run scored, best first: neither fenced out nor unmeasured (the staged
    locate leaves untried layers NaN)."""
    unmeasured = [layer for layer, score in enumerate(scores.scores) if not math.isfinite(score)]
    return rank_layers(scores.scores, sorted(set(scores.excluded) | set(unmeasured)),
                       scores.direction)


def write_export(plan: ExportPlan, handle: ModelHandle, model_name: str, editor: str,
                 scores: LayerScores, provenance: Provenance,
                 overrides: dict[str, Any] | None = None) -> ExportResult:
    """Write the file (and a JSON file's provenance sidecar) for the golden layer of ``scores``."""
    config = resolved_config(handle, editor, provenance.profile, overrides)
    layers, notes = export_layers(scores, plan.algorithm, config)
    notes += [f"not in the file: {text}" for text in unwritable_settings(plan.algorithm, config)]
    values = export_values(plan.tool, plan.algorithm, config, layers, handle.adapter,
                           handle.num_layers, model_name, easyedit_family(handle.adapter.name))
    provenance = Provenance(**{**asdict(provenance), "notes": provenance.notes + notes})
    if plan.sidecar:
        write_output_json(plan.sidecar, {"file": plan.path.name, "tool": TOOL_NAMES[plan.tool],
                                         "algorithm": plan.algorithm, "model": model_name,
                                         "layers": layers, **asdict(provenance)})
        write_output_text(plan.path, flat_json(values))
    else:
        write_output_text(plan.path, yaml_with_comments(values, comment_lines(plan, layers,
                                                                             provenance)))
    return ExportResult(plan.path, plan.sidecar, layers, notes)


def comment_lines(plan: ExportPlan, layers: list[int], provenance: Provenance) -> list[str]:
    p = provenance
    how = p.method + (f" ({p.strategy})" if p.strategy else "") + (f", reading {p.reading}"
                                                                    if p.reading else "")
    lines = [f"{plan.algorithm} hyperparameters for {TOOL_NAMES[plan.tool]}, written by "
             f"goldenlayers {p.goldenlayers_version} on {p.date}.",
             f"layers {layers}: golden layer {p.golden_layer}, found by {how} on "
             f"{p.proxy_requests} {p.dataset} proxy requests (seed {p.seed}).",
             *([p.stability] if p.stability else []),
             f"Editor settings: goldenlayers profile {p.profile!r} for this model.",
             *p.notes]
    if len(layers) > 1:
        lines.append("The window: of the windows of this size inside the model that hold the "
                     "golden layer, the one whose layers the same run ranks best (README).")
    return lines


def flat_json(values: dict[str, Any]) -> str:
    """One key per line, lists inline, as the ROME/MEMIT repositories' files are written."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in values.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def yaml_with_comments(values: dict[str, Any], comments: list[str]) -> str:
    import yaml

    header = "".join(f"# {line}\n" for line in comments)
    return header + yaml.safe_dump(values, sort_keys=False, default_flow_style=None, width=100)


# --- import ---------------------------------------------------------------------------------------


def read_hparams_for(path: str, editor: str | None = None) -> HparamsFile:
    """The checked file, before the model loads; ``editor``: the one the user named, if any."""
    hparams = read_hparams(path)
    if editor is not None and algorithm_for(editor) != hparams.algorithm:
        raise HparamsError(f"{path} is a {hparams.algorithm} file, but --editor is {editor}")
    return hparams


def settings_for_model(hparams: HparamsFile, handle: ModelHandle) -> ImportedSettings:
    """The file's editor, layer and overrides on this model; its templates checked against the
    model's modules."""
    model, adapter = handle.model, handle.adapter
    head = adapter.module(model, adapter.head).weight
    modules = dict(model.named_modules())
    tied = {name for name, module in modules.items()
            if isinstance(getattr(module, "weight", None), torch.Tensor)
            and module.weight.data_ptr() == head.data_ptr()}
    editor = EDITORS.get(hparams.editor)
    settings = imported_settings(hparams, handle.num_layers,
                                 editor.config_class.keys() if editor else ())
    check_templates(hparams, adapter, set(modules), tied)
    return settings


def imported_editor(settings: ImportedSettings, profile: str = "default",
                    overrides: dict[str, Any] | None = None):
    """Our editor with the file's settings over ``profile``'s, ``overrides`` (--set) last."""
    return _editor(settings.editor, profile, {**settings.overrides, **(overrides or {})})
