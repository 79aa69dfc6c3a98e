"""Profiles: one table of editor defaults per (profile, model family, editor); the "easyedit"
profile equals EasyEdit's published files; the "default" one resolves the configs results/ holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.editing import (DEFAULTS, ConfigError, editor_class, get_editor,
                                  read_config_record)
from goldenlayers.editing.config import config_record, resolve
from goldenlayers.editing.profiles import (EASYEDIT_ALGORITHMS, EASYEDIT_FILES, easyedit_file,
                                           fluency_procedure, model_family, table_values)

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
# Every ROME, R-ROME, EMMET, MEMIT and AlphaEdit file EasyEdit ships, parsed (its "source" names the
# commit): the values as published.
PUBLISHED = REPO / "tests" / "data" / "easyedit_published.json"
# A window is the length of the file's ``layers`` (EasyEdit has no window key).
WINDOW_EDITORS = ("emmet", "memit")


def _published() -> dict:
    return json.loads(PUBLISHED.read_text())["files"]


def _as_number(value):
    """YAML 1.1 reads "5e-1" (no dot) as a string: EasyEdit's loader gets a str, we compare numbers."""
    return float(value) if isinstance(value, str) else value


@pytest.mark.parametrize("family,editor", sorted({(f, e) for (p, f, e) in DEFAULTS if p == "easyedit"}))
def test_easyedit_profile_equals_easyedits_published_file(family, editor):
    published = _published()[EASYEDIT_ALGORITHMS[editor]][EASYEDIT_FILES[family]]
    config = resolve(editor_class(editor).config_class, editor, "easyedit", family, {}).to_dict()
    shared = sorted(set(config) & set(published))
    assert {"v_num_grad_steps", "v_lr", "v_weight_decay", "clamp_norm_factor"} <= set(shared)
    wrong = {key: (config[key], published[key]) for key in shared
             if config[key] != _as_number(published[key])}
    if editor in WINDOW_EDITORS and config["window"] != len(published["layers"]):
        wrong["window"] = (config["window"], f"layers {published['layers']}")
    assert not wrong, f"easyedit {family}/{editor} differs from {easyedit_file(family, editor)}: {wrong}"


def test_easyedit_values_that_were_wrong_before():
    """Two tables claimed EasyEdit's values and disagreed; the files say these."""
    assert not table_values("easyedit", "gpt2", "rome")["mom2_adjustment"]
    assert table_values("easyedit", "gpt2", "emmet")["mom2_update_weight"] == 10_000.0
    assert table_values("easyedit", "llama", "emmet")["mom2_update_weight"] == 100_000.0
    assert table_values("easyedit", "llama", "emmet")["window"] == 1  # layers: [5]
    assert easyedit_file("smollm2", "r-rome") == "hparams/R-ROME/llama-7b.yaml"
    assert (fluency_procedure("easyedit"), fluency_procedure("default")) == ("easyedit", "greedy")


# The adapter of each model whose study is in results/ (study.json records the model's name).
ADAPTERS = {"smollm2-135m": "llama", "gemma3-270m": "gemma"}


@pytest.mark.parametrize("model", sorted(ADAPTERS))
def test_default_profile_resolves_the_configs_the_stored_studies_were_run_with(model):
    manifest = json.loads((REPO / "results" / model / "study.json").read_text())
    assert manifest["editors"], "no editor in the study"
    for editor, stored in manifest["editors"].items():
        profile, config = read_config_record(editor_class(editor).config_class, stored["config"])
        resolved = resolve(editor_class(editor).config_class, editor, profile,
                           model_family(ADAPTERS[model], model), stored["overrides"])
        assert config_record(resolved, profile) == stored["config"], (model, editor)


def test_profile_resolves_for_the_model_and_a_set_key_still_wins(tiny_gpt2, tiny_llama):
    editor = get_editor("r-rome", profile="easyedit", v_lr=0.2)
    config = editor.config_for(tiny_llama)
    assert (editor.profile, config.v_num_grad_steps, config.v_lr) == ("easyedit", 25, 0.2)
    assert editor.config_record(tiny_llama)["profile"] == "easyedit"
    assert get_editor("r-rome", profile="easyedit").config_for(tiny_gpt2).v_num_grad_steps == 20
    assert get_editor("r-rome").config_for(tiny_llama).v_num_grad_steps == 25  # tiny-llama: llama
    assert not hasattr(config, "profile")  # the profile is the editor's, not a config field
    with pytest.raises(ConfigError, match="unknown profile 'fastest'"):
        get_editor("r-rome", profile="fastest")
    with pytest.raises(ConfigError, match="unknown RRomeConfig key 'v_rl'"):
        get_editor("r-rome", profile="easyedit", v_rl=0.2)


def test_a_stored_record_reads_back_with_its_profile():
    record = {**config_record(get_editor("emmet").config_class(), "easyedit")}
    profile, config = read_config_record(editor_class("emmet").config_class, record)
    assert (profile, config.window) == ("easyedit", 1)
    record.pop("profile")  # older records always had it; without it, the default
    assert read_config_record(editor_class("emmet").config_class, record)[0] == "default"


def test_edit_profile_easyedit_writes_easyedits_settings_in_the_json_config(tmp_path):
    out = tmp_path / "edit.json"
    result = runner.invoke(app, ["edit", "--model", "tiny-llama", "--prompt", "{} is located in",
                                 "--subject", "Paris", "--target", "Rome", "--layer", "1",
                                 "--profile", "easyedit", "--set", "v_num_grad_steps=2",
                                 "--json", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads(out.read_text())["config"]
    assert config["profile"] == "easyedit"
    assert (config["v_num_grad_steps"], config["n_context_templates"], config["v_lr"]) == (2, 20, 0.5)
    assert (config["v_weight_decay"], config["kl_factor"], config["mom2_n_samples"]) == (1e-3, 0.0625, 100_000)


def test_locate_brute_force_passes_the_profile_to_its_editor(monkeypatch):
    from goldenlayers import locate

    seen = {}

    def fake(method, **settings):
        seen.update(settings)
        raise SystemExit(0)
    monkeypatch.setattr(locate, "get_locator", fake)
    runner.invoke(app, ["locate", "--model", "tiny-llama", "--proxy", "1", "--method", "brute-force",
                        "--profile", "easyedit"])
    assert seen["editor_overrides"] == {"profile": "easyedit"}
