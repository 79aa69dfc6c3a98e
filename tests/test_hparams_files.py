"""Hyperparameter files of EasyEdit and the ROME/MEMIT code: written for the golden layer with
exactly the keys their loaders accept, read back into the same editor settings, and refused by
name where we cannot honour them (issue 29)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from goldenlayers.app.export import (imported_editor, plan_export, provenance_of,
                                     read_hparams_for, resolved_config, settings_for_model,
                                     write_export)
from goldenlayers.cli import app
from goldenlayers.editing.hparams_files import (CONFIG_KEYS, FIXED_VALUES, IGNORED_KEYS, KEYS_FILE,
                                                TEMPLATE_KEYS, HparamsError, read_hparams,
                                                tool_for_path, window_layers)
from goldenlayers.locate.base import LayerScores, LayerStability

# The shared facts beside the repository (/work/shared for /work/main and its worktrees).
SHARED_FORMATS = [parent / "shared" / "hparams_formats" for parent in Path(__file__).resolve().parents]
KEYS = json.loads(KEYS_FILE.read_text())
EXPORTS = [("easyedit", editor) for editor in ("rome", "r-rome", "emmet", "memit", "alphaedit")] \
    + [("rome", "rome"), ("rome", "memit")]
SUFFIX = {"easyedit": ".yaml", "rome": ".json"}
# EasyEdit's hparams/R-ROME/gpt2-xl.yaml (easyedit_published.json) with its layer and
# v_loss_layer for a 4-layer GPT-2, written as a user would.
R_ROME_GPT2_XL = """\
alg_name: "R-ROME"
model_name: "./hugging_cache/gpt2-xl"
stats_dir: "./data/stats"
device: 0
layers: [2]
fact_token: "subject_last"
v_num_grad_steps: 20
v_lr: 5e-1
v_loss_layer: 3
v_weight_decay: 0.5
clamp_norm_factor: 4
kl_factor: 0.0625
mom2_adjustment: false
context_template_length_params: [[5, 10], [10, 10]]
rewrite_module_tmp: "transformer.h.{}.mlp.c_proj"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "transformer.wte"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
fp16: false
"""


def scores_for(handle, golden: int, scores: list[float]) -> LayerScores:
    return LayerScores(method="lga", model=handle.name, model_fingerprint=handle.fingerprint,
                       scores=scores, excluded=[], golden_layer=golden,
                       top_k=[golden], per_request=[], seconds=0.0, peak_memory_bytes=None,
                       settings={"fence_k": 1.0}, request_ids=["1", "2", "3"],
                       stability=LayerStability(100, 0, {golden: 0.8, 0: 0.2}), reading="r")


def export(tmp_path, handle, tool, editor, profile="default", overrides=None, golden=1):
    plan = plan_export(str(tmp_path / f"{editor}-{tool}{SUFFIX[tool]}"), None, editor)
    scores = scores_for(handle, golden, [0.1, 0.9, 0.5, 0.2][:handle.num_layers])
    provenance = provenance_of(scores, dataset="counterfact", seed=0, profile=profile)
    return write_export(plan, handle, handle.name, editor, scores, provenance, overrides)


def load(path: Path) -> dict:
    text = path.read_text()
    return yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)


def allowed_keys(tool: str, algorithm: str) -> tuple[set[str], set[str]]:
    spec = KEYS["easyedit" if tool == "easyedit" else "rome_memit_repos"]["algorithms"][algorithm]
    return {name for name, _ in spec["required"]}, set(spec["optional"])


def test_the_bundled_key_lists_are_the_shared_facts():
    found = [folder / "keys.json" for folder in SHARED_FORMATS if (folder / "keys.json").is_file()]
    if not found:
        pytest.skip("the shared hparams_formats/keys.json was not found")
    shared = found[0]
    assert json.loads(shared.read_text()) == KEYS


def test_every_key_of_every_runnable_file_has_a_rule():
    ruled = (set(CONFIG_KEYS) | set(TEMPLATE_KEYS) | set(FIXED_VALUES) | set(IGNORED_KEYS)
             | {"layers", "v_loss_layer", "context_template_length_params", "alg_name"})
    for tool, table in (("easyedit", "easyedit"), ("rome", "rome_memit_repos")):
        for algorithm, spec in KEYS[table]["algorithms"].items():
            if algorithm == "AlphaEdit":
                continue  # written only; its file is refused whole when read
            keys = {name for name, _ in spec["required"]} | set(spec["optional"])
            assert keys <= ruled, (tool, algorithm, keys - ruled)


@pytest.mark.parametrize("tool,editor", EXPORTS)
def test_an_export_has_exactly_the_loader_keys_and_real_modules(tmp_path, tiny_model, tool, editor):
    written = export(tmp_path, tiny_model, tool, editor)
    values = load(written.path)
    algorithm = {"r-rome": "R-ROME", "alphaedit": "AlphaEdit"}.get(editor, editor.upper())
    required, optional = allowed_keys(tool, algorithm)
    assert required <= set(values) <= required | optional
    assert ("alg_name" in values) == (tool == "easyedit")
    modules = dict(tiny_model.model.named_modules())
    for key in TEMPLATE_KEYS:
        names = [values[key].format(layer) for layer in values["layers"]] \
            if "{}" in values[key] else [values[key]]
        assert all(name in modules for name in names), (key, names)
    assert values["rewrite_module_tmp"].format(1) == tiny_model.adapter.edit_matrix_name(1)
    assert values["v_loss_layer"] == tiny_model.num_layers - 1
    assert all(0 <= layer < tiny_model.num_layers for layer in values["layers"])
    assert 1 in values["layers"] and values.get("model_name", tiny_model.name) == tiny_model.name


@pytest.mark.parametrize("tool,editor", [e for e in EXPORTS if e[1] != "alphaedit"])
@pytest.mark.parametrize("profile", ["default", "easyedit"])
def test_export_then_import_gives_the_same_editor_settings(tmp_path, tiny_model, tool, editor,
                                                           profile):
    overrides = {"window": 3} if editor in ("emmet", "memit") else {}  # fits in 4 layers
    written = export(tmp_path, tiny_model, tool, editor, profile, overrides, golden=2)
    imported = settings_for_model(read_hparams_for(str(written.path)), tiny_model)
    assert imported.editor == editor and imported.layer == max(written.layers)
    back = imported_editor(imported, profile).config_for(tiny_model)
    assert back == resolved_config(tiny_model, editor, profile, overrides)
    # Ranked 1, 2, 3, 0: of the windows holding layer 2, layers 1-3 rank best.
    assert written.layers == ([1, 2, 3] if editor in ("emmet", "memit") else [2])


def test_the_sidecar_and_the_comments_say_how_the_layer_was_found(tmp_path, tiny_gpt2):
    yaml_file = export(tmp_path, tiny_gpt2, "easyedit", "r-rome").path.read_text()
    assert "found by lga, reading r on 3 counterfact proxy requests (seed 0)" in yaml_file
    assert "layer 1: 80%" in yaml_file and "profile 'default'" in yaml_file
    written = export(tmp_path, tiny_gpt2, "rome", "memit")
    side = json.loads(written.sidecar.read_text())
    assert written.sidecar.name == "memit-rome.json.provenance.json"
    assert side["method"] == "lga" and side["proxy_requests"] == 3
    assert side["dataset"] == "counterfact" and side["layers"] == written.layers
    assert side["stability"].startswith("stability over 100 bootstrap resamples")


def test_a_hand_written_easyedit_file_is_read(tmp_path, tiny_gpt2):
    path = tmp_path / "r-rome.yaml"
    path.write_text(R_ROME_GPT2_XL)
    imported = settings_for_model(read_hparams_for(str(path)), tiny_gpt2)
    assert imported.editor == "r-rome" and imported.layer == 2
    assert imported.overrides["v_lr"] == 0.5  # YAML reads EasyEdit's 5e-1 as a string
    assert imported.overrides["clamp_norm_factor"] == 4.0
    assert (imported.overrides["n_context_templates"],
            imported.overrides["context_template_length"]) == (20, 10)
    assert any(item.startswith("device (") for item in imported.ignored)
    assert any("20 templates of 10 tokens" in note for note in imported.notes)
    config = imported_editor(imported).config_for(tiny_gpt2)
    assert config.v_num_grad_steps == 20 and config.mom2_n_samples == 100_000


def test_an_unknown_key_is_refused_by_name(tmp_path):
    path = tmp_path / "r-rome.yaml"
    path.write_text(R_ROME_GPT2_XL + "learning_rate: 0.1\n")
    with pytest.raises(HparamsError, match="unknown key 'learning_rate'"):
        read_hparams(path)
    path.write_text(R_ROME_GPT2_XL.replace("v_lr: 5e-1\n", ""))
    with pytest.raises(HparamsError, match="required key 'v_lr' is missing"):
        read_hparams(path)


@pytest.mark.parametrize("change,message", [
    (("layers: [2]", "layers: [4]"), r"layers \[4\]: layer 4 is out of range"),
    (("v_loss_layer: 3", "v_loss_layer: 47"), "v_loss_layer 47 is not this model's last layer 3"),
    (("subject_last", "last"), "fact_token 'last' is not supported"),
    (("v_num_grad_steps: 20", "v_num_grad_steps: many"), "v_num_grad_steps expects int"),
    (('ln_f_module: "transformer.ln_f"', 'ln_f_module: "model.norm"'),
     r"ln_f_module 'model.norm' names no module of this model.*transformer\.h\.\{\}\.mlp\.c_proj"),
    (('rewrite_module_tmp: "transformer.h.{}.mlp.c_proj"',
      'rewrite_module_tmp: "transformer.h.{}.attn.c_proj"'),
     "rewrite_module_tmp 'transformer.h.{}.attn.c_proj' is a module of this model, but "),
])
def test_what_we_cannot_honour_is_refused_by_name(tmp_path, tiny_gpt2, change, message):
    path = tmp_path / "r-rome.yaml"
    path.write_text(R_ROME_GPT2_XL.replace(*change))
    with pytest.raises(HparamsError, match=message):
        settings_for_model(read_hparams_for(str(path)), tiny_gpt2)


def test_an_alphaedit_file_is_written_but_not_run(tmp_path, tiny_llama):
    written = export(tmp_path, tiny_llama, "easyedit", "alphaedit")
    with pytest.raises(HparamsError, match="no AlphaEdit editor"):
        settings_for_model(read_hparams_for(str(written.path)), tiny_llama)


def test_the_format_comes_from_the_option_or_the_extension():
    assert tool_for_path("a.yml") == "easyedit" and tool_for_path("a.json") == "rome"
    assert tool_for_path("a.txt", "easyedit") == "easyedit"
    with pytest.raises(HparamsError, match="--export-format easyedit writes YAML"):
        tool_for_path("a.json", "easyedit")
    with pytest.raises(HparamsError, match="has no R-ROME hyperparameter file"):
        plan_export("r.json", None, "r-rome")


@pytest.mark.parametrize("golden", range(6))
@pytest.mark.parametrize("size", [1, 3, 6, 8])
def test_the_window_holds_the_golden_layer_inside_the_model(golden, size):
    layers = window_layers([5, 4, 3, 2, 1, 0], golden, size, 6)
    assert golden in layers and len(layers) == min(size, 6)
    assert layers == list(range(layers[0], layers[-1] + 1)) and 0 <= layers[0] and layers[-1] < 6


def test_the_window_is_the_one_the_run_ranks_best():
    ranking = [3, 4, 5, 1, 0, 2]  # hand-ranked; windows of 3 holding layer 3: 1-3, 2-4, 3-5
    assert window_layers(ranking, 3, 3, 8) == [3, 4, 5]  # ranks 0+1+2 beat 3+5+0 and 5+0+1
    assert window_layers([], 3, 3, 8) == [1, 2, 3]  # nothing ranked: the window ending there
    assert window_layers(ranking, 0, 3, 8) == [0, 1, 2]


def test_locate_exports_and_edit_reads_it(tmp_path):
    runner = CliRunner()
    out = tmp_path / "r-rome.yaml"
    result = runner.invoke(app, ["locate", "--model", "tiny-gpt2", "--proxy", "3", "--budget", "0",
                                 "--export", str(out)])  # the staged locate, no trial edits
    assert result.exit_code == 0, result.output
    values = yaml.safe_load(out.read_text())
    assert values["alg_name"] == "R-ROME" and f"layers {values['layers']}" in result.output
    edited = runner.invoke(app, ["edit", "--model", "tiny-gpt2", "--hparams", str(out),
                                 "--prompt", "{} is a citizen of", "--subject", "Danielle Darrieux",
                                 "--target", " France", "--set", "v_num_grad_steps=2",
                                 "--set", "n_context_templates=1"])
    assert edited.exit_code == 0, edited.output
    assert f"r-rome at layer {values['layers'][0]}" in edited.output
    assert "ignored (harmless here): model_name" in edited.output
    refused = runner.invoke(app, ["edit", "--model", "tiny-gpt2", "--hparams", str(out),
                                  "--layer", "1", "--prompt", "{} is", "--subject", "A",
                                  "--target", " B"])
    assert refused.exit_code != 0 and "give one of them" in str(refused.exception)


def test_a_window_ranks_only_the_layers_the_run_measured(tmp_path, tiny_llama):
    scores = scores_for(tiny_llama, 1, [float("nan"), 0.5, 0.9, 0.1])  # layer 0 untried (staged)
    scores.excluded = [3]
    plan = plan_export(str(tmp_path / "memit.yaml"), None, "memit")
    provenance = provenance_of(scores, dataset="zsre", seed=1, profile="default")
    written = write_export(plan, tiny_llama, "tiny-llama", "memit", scores, provenance,
                           {"window": 2})
    assert written.layers == [1, 2]  # ranks 1 + 0 beat the unmeasured layer 0's worst + 1
