"""Profiles: EasyEdit's published hyperparameters per model family, through the API and the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.editing import ConfigError, get_editor
from goldenlayers.editing.profiles import evaluation_settings, profile_overrides

runner = CliRunner()


def test_easyedit_profile_has_easyedit_values_per_family():
    gpt2, llama = profile_overrides("easyedit", "rome", "gpt2"), profile_overrides("easyedit", "rome", "llama")
    assert (gpt2["v_num_grad_steps"], gpt2["v_weight_decay"], gpt2["mom2_adjustment"]) == (20, 0.5, True)
    assert (llama["v_num_grad_steps"], llama["v_weight_decay"], llama["mom2_adjustment"]) == (25, 1e-3, False)
    assert gpt2["n_context_templates"] == 20 and gpt2["mom2_n_samples"] == 100_000
    emmet = profile_overrides("easyedit", "emmet", "gpt2")
    assert (emmet["mom2_update_weight"], emmet["emmet_lambda"], emmet["clamp_norm_factor"]) == (1.0, 0.1, 0.75)
    assert profile_overrides("default", "rome", "gpt2") == {"profile": "default"}
    assert evaluation_settings("easyedit")["fluency_procedure"] == "easyedit"
    assert evaluation_settings("default") == {}


def test_profile_resolves_for_the_model_and_a_set_key_still_wins(tiny_gpt2, tiny_llama):
    config = get_editor("r-rome", profile="easyedit", v_lr=0.2).config_for(tiny_llama)
    assert (config.profile, config.v_num_grad_steps, config.v_lr) == ("easyedit", 25, 0.2)
    assert get_editor("r-rome", profile="easyedit").config_for(tiny_gpt2).v_num_grad_steps == 20
    assert get_editor("r-rome").config_for(tiny_llama).profile == "default"
    with pytest.raises(ConfigError, match="profile must be one of default, easyedit"):
        get_editor("r-rome", profile="fastest")


def test_edit_profile_easyedit_writes_easyedits_settings_in_the_json_config(tmp_path):
    out = tmp_path / "edit.json"
    result = runner.invoke(app, ["edit", "--model", "tiny-llama", "--prompt", "{} is located in",
                                 "--subject", "Paris", "--target", "Rome", "--layer", "1",
                                 "--profile", "easyedit", "--json", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads(out.read_text())["config"]
    assert config["profile"] == "easyedit"
    assert (config["v_num_grad_steps"], config["n_context_templates"], config["v_lr"]) == (25, 20, 0.5)
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
