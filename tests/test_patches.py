"""Edit patches, hand-written requests, and the `edit` / `patch` commands on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from goldenlayers.app.user_input import load_requests, request_from_text
from goldenlayers.cli import app
from goldenlayers.data.records import EditRequest
from goldenlayers.editing import PatchError, apply_patch, get_editor, load_patch, remove_patch, save_patch
from goldenlayers.editing.restore import snapshot
from goldenlayers.errors import InputError
from goldenlayers.models import load_model

REQUEST = EditRequest(case_id="0", prompt="The mother tongue of Danielle Darrieux is",
                      subject="Danielle Darrieux", target_new="English")
FAST = dict(v_num_grad_steps=4, n_context_templates=2, context_template_length=5)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_patch_round_trip_applies_and_removes(tiny_llama, tmp_path):
    editor = get_editor("r-rome", **FAST)
    layers = editor.layers_for(tiny_llama, 2)
    original = snapshot(tiny_llama, layers)
    with editor.edited(tiny_llama, [REQUEST], 2) as result:
        edited = tiny_llama.adapter.edit_weight(tiny_llama.model, 2).detach().clone()
        path = save_patch(result, tmp_path / "edit.safetensors", original, tiny_llama)
    assert path.stat().st_size < 24_000  # factors and samples, not the matrix (32 KB)
    patch = load_patch(path)
    assert patch.layers == (2,) and patch.requests[0]["target_new"] == "English"
    apply_patch(tiny_llama, patch)
    try:
        torch.testing.assert_close(tiny_llama.adapter.edit_weight(tiny_llama.model, 2), edited,
                                   rtol=1e-5, atol=1e-6)
    finally:
        report = remove_patch(tiny_llama, patch)
    assert report.max_abs_error is not None and report.max_abs_error < 1e-5
    assert "removed" in report.describe()
    torch.testing.assert_close(tiny_llama.adapter.edit_weight(tiny_llama.model, 2),
                               original.tensors[2], rtol=0, atol=1e-5)


def test_a_patch_for_another_model_is_refused(tiny_llama, tiny_gemma3, tmp_path):
    result = get_editor("r-rome", **FAST).compute(tiny_llama, [REQUEST], 1)
    patch = load_patch(save_patch(result, tmp_path / "p.safetensors", snapshot(tiny_llama, [1]),
                                  tiny_llama))
    before = tiny_gemma3.adapter.edit_weight(tiny_gemma3.model, 1).detach().clone()
    with pytest.raises(PatchError, match="made for model 'tiny-llama'"):
        apply_patch(tiny_gemma3, patch)
    assert torch.equal(tiny_gemma3.adapter.edit_weight(tiny_gemma3.model, 1), before)


def test_requests_written_by_hand(tmp_path):
    braces = request_from_text("The mother tongue of {} is", "Danielle Darrieux", "English")
    plain = request_from_text("The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English")
    assert braces.prompt == plain.prompt == "The mother tongue of Danielle Darrieux is"
    with pytest.raises(InputError, match="does not occur"):
        request_from_text("The capital of France is", "Germany", "Berlin")
    (tmp_path / "r.csv").write_text("prompt,subject,target\nApple A5 was created by,Apple A5,Google\n"
                                    "The capital of {} is,France,Rome\n")
    rows = load_requests(str(tmp_path / "r.csv"))
    assert [(r.case_id, r.prompt, r.target_new) for r in rows] == [
        ("1", "Apple A5 was created by", "Google"), ("2", "The capital of France is", "Rome")]
    (tmp_path / "r.jsonl").write_text(json.dumps({"prompt": "{} plays", "subject": "Messi",
                                                  "target": "chess"}) + "\n")
    assert load_requests(str(tmp_path / "r.jsonl"))[0].prompt == "Messi plays"
    with pytest.raises(InputError, match="go together"):
        load_requests(prompt="x {}", subject="y")


def test_edit_command_writes_json_patch_and_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM

    runner = CliRunner()
    sets = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]
    args = ["edit", "--model", "tiny-llama", "--prompt", "The mother tongue of {} is", "--subject",
            "Danielle Darrieux", "--target", "English", "--layer", "2", "--editor", "r-rome",
            "--json", str(tmp_path / "e.json"), "--patch", str(tmp_path / "e.safetensors"),
            "--out", str(tmp_path / "model"), *sets]
    outcome = runner.invoke(app, args, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["editor"] == "r-rome" and result["layer"] == 2
    assert result["config"]["v_num_grad_steps"] == 4 and result["seconds_per_edit"] > 0
    row = result["requests"][0]
    assert row["success"] == row["answer_after"].strip().startswith("English")
    assert "rewrite_accuracy" in row["metrics_after"]

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    fresh = load_model("tiny-llama")
    name = "model.layers.2.mlp.down_proj.weight"
    assert not torch.equal(saved.state_dict()[name], fresh.model.state_dict()[name])
    patched = load_patch(tmp_path / "e.safetensors")
    apply_patch(fresh, patched)
    torch.testing.assert_close(fresh.model.state_dict()[name], saved.state_dict()[name],
                               rtol=1e-5, atol=1e-6)

    removed = runner.invoke(app, ["patch", "remove", "--model", str(tmp_path / "model"),
                                  str(tmp_path / "e.safetensors"), "--out",
                                  str(tmp_path / "unpatched")], catch_exceptions=False)
    assert removed.exit_code == 0 and "removed" in removed.output
    assert (tmp_path / "unpatched" / "config.json").is_file()


def test_edit_command_rejects_unknown_settings_and_layers():
    runner = CliRunner()
    base = ["edit", "--model", "tiny-llama", "--prompt", "{} is", "--subject", "Paris",
            "--target", "big"]
    from goldenlayers.editing import ConfigError
    from goldenlayers.errors import GoldenLayersError

    with pytest.raises(ConfigError, match="unknown R?RomeConfig key 'v_rl'"):
        runner.invoke(app, [*base, "--layer", "1", "--set", "v_rl=1"], catch_exceptions=False)
    with pytest.raises(GoldenLayersError, match="valid layers are 0..3"):
        runner.invoke(app, [*base, "--layer", "9"], catch_exceptions=False)


def test_a_patch_applies_only_once_and_removes_only_when_applied(tiny_llama, tmp_path):
    editor = get_editor("r-rome", **FAST)
    original = snapshot(tiny_llama, [2])
    result = editor.compute(tiny_llama, [REQUEST], 2)
    patch = load_patch(save_patch(result, tmp_path / "p.safetensors", original, tiny_llama))
    weight = lambda: tiny_llama.adapter.edit_weight(tiny_llama.model, 2).detach().clone()  # noqa: E731
    assert torch.equal(weight(), original.tensors[2])  # saving left the weights as they were
    with pytest.raises(PatchError, match=r"refusing to remove patch .*p.safetensors: it is not "
                                         r"applied to 'tiny-llama'"):
        remove_patch(tiny_llama, patch)
    assert torch.equal(weight(), original.tensors[2])
    apply_patch(tiny_llama, patch)
    try:
        patched = weight()
        with pytest.raises(PatchError, match=r"refusing to apply .*: it is already applied"):
            apply_patch(tiny_llama, patch)
        assert torch.equal(weight(), patched)
    finally:
        remove_patch(tiny_llama, patch)
    apply_patch(tiny_llama, patch)  # removed up to float rounding counts as the original
    remove_patch(tiny_llama, patch)
    torch.testing.assert_close(weight(), original.tensors[2], rtol=0, atol=1e-5)


def test_a_patch_onto_other_weights_or_shapes_is_refused_untouched(tiny_llama, tiny_gpt2, tmp_path):
    from goldenlayers.editing.restore import preserved

    original = snapshot(tiny_llama, [1])
    result = get_editor("r-rome", **FAST).compute(tiny_llama, [REQUEST], 1)
    patch = load_patch(save_patch(result, tmp_path / "p.safetensors", original, tiny_llama))
    with preserved(tiny_llama, [1]):
        with torch.no_grad():
            tiny_llama.adapter.edit_weight(tiny_llama.model, 1).mul_(1.5)  # other edits since
        changed = tiny_llama.adapter.edit_weight(tiny_llama.model, 1).detach().clone()
        with pytest.raises(PatchError, match="layer 1 matches neither the weights it was made from"):
            apply_patch(tiny_llama, patch)
        assert torch.equal(tiny_llama.adapter.edit_weight(tiny_llama.model, 1), changed)
    with pytest.raises(PatchError, match=r"made for model 'tiny-llama' \(llama architecture\)"):
        apply_patch(tiny_gpt2, patch)
    import dataclasses
    wider = dataclasses.replace(patch, updates=(dataclasses.replace(
        patch.updates[0], right=torch.zeros(patch.updates[0].right.shape[0] + 1, 1)),))
    with pytest.raises(PatchError, match=r"layer 1 is a \[64, 129\] matrix there"):
        apply_patch(tiny_llama, wider)
    assert torch.equal(tiny_llama.adapter.edit_weight(tiny_llama.model, 1), original.tensors[1])
