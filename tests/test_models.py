import dataclasses

import pytest
import torch
from torch import nn

from goldenlayers.errors import GoldenLayersError
from goldenlayers.models import load as load_module
from goldenlayers.models import adapter_for, load_model
from goldenlayers.models.adapters import LayerOutOfRangeError, UnknownArchitectureError
from goldenlayers.models.handle import greedy_continuations, target_nll
from goldenlayers.models.hooks import trace


def test_every_layer_has_an_edit_matrix(tiny_model):
    adapter, model = tiny_model.adapter, tiny_model.model
    assert tiny_model.num_layers == 4
    for layer in range(4):
        weight = adapter.edit_weight_out_in(model, layer)
        d_model = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd
        assert weight.shape == (d_model, 128)  # [d_out, d_in] on every architecture


def test_w_times_key_equals_module_output(tiny_model):
    """Through the adapter, v = W k (+ bias) reproduces what the edit module really computes."""
    adapter, model = tiny_model.adapter, tiny_model.model
    module = adapter.edit_module(model, 2)
    key = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    expected = module(key)
    value = key @ adapter.edit_weight_out_in(model, 2).T
    bias = adapter.edit_bias(model, 2)
    if bias is not None:
        value = value + bias
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def test_add_to_edit_weight_changes_the_module_output(tiny_gpt2):
    adapter, model = tiny_gpt2.adapter, tiny_gpt2.model
    original = adapter.edit_weight(model, 1).detach().clone()
    delta = torch.zeros(64, 128)
    delta[5, 7] = 1.0
    key = torch.zeros(128)
    key[7] = 2.0
    before = adapter.edit_module(model, 1)(key)
    adapter.add_to_edit_weight(model, 1, delta)
    try:
        after = adapter.edit_module(model, 1)(key)
        assert after[5] - before[5] == pytest.approx(2.0)
        assert torch.equal(after[:5], before[:5])
    finally:
        with torch.no_grad():
            adapter.edit_weight(model, 1).copy_(original)


def test_layer_out_of_range_names_the_valid_range(tiny_llama):
    with pytest.raises(LayerOutOfRangeError, match=r"valid layers are 0\.\.3"):
        tiny_llama.adapter.edit_module(tiny_llama.model, 4)
    with pytest.raises(LayerOutOfRangeError):
        tiny_llama.adapter.edit_module(tiny_llama.model, -1)


def test_unknown_architecture_names_class_and_modules():
    class Strange(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("Config", (), {"model_type": "strange"})()
            self.trunk = nn.Linear(2, 2)

    with pytest.raises(UnknownArchitectureError, match=r"Strange.*strange.*trunk"):
        adapter_for(Strange())


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(GoldenLayersError, match="neither a preset"):
        load_model("no-such-model")


def test_trace_captures_keys_and_output_grads(tiny_llama):
    """The hook primitive sees the edit matrix's input and the gradient of the loss at its output."""
    handle = tiny_llama
    module = handle.adapter.edit_module(handle.model, 1)
    batch = handle.batch(["The capital of France is"], ["Paris"])
    weight = handle.adapter.edit_weight(handle.model, 1)
    weight.requires_grad_(True)
    try:
        with trace({"m": module}, capture_inputs=True, capture_output_grads=True) as record:
            target_nll(handle, batch).sum().backward()
        key, grad_out = record.inputs["m"][0], record.output_grads["m"][0]  # (T, d_ff), (T, d_model)
        torch.testing.assert_close(grad_out.T @ key, weight.grad, rtol=1e-4, atol=1e-7)
    finally:
        weight.requires_grad_(False)
        weight.grad = None


def test_trace_edit_output_and_stop(tiny_gpt2):
    handle = tiny_gpt2
    name = handle.adapter.mlp_name(0)
    batch = handle.batch(["Hello world"])
    base = handle.model.get_submodule(handle.adapter.base_model)
    with trace({name: handle.adapter.mlp_module(handle.model, 0)}, capture_outputs=True,
               edit_output=lambda _, out: out * 0, stop_after=name) as record:
        base(input_ids=batch.input_ids)
        pytest.fail("the forward pass should have stopped after the traced module")
    assert torch.count_nonzero(record.outputs[name]) == 0


def test_padding_side_does_not_change_the_loss(tiny_model):
    prompts, targets = ["The capital of France is", "A"], ["Paris and more", "b"]
    right = target_nll(tiny_model, tiny_model.batch(prompts, targets, padding_side="right"))
    left = target_nll(tiny_model, tiny_model.batch(prompts, targets, padding_side="left"))
    alone = torch.cat([target_nll(tiny_model, tiny_model.batch([p], [t])) for p, t in zip(prompts, targets)])
    torch.testing.assert_close(right, left, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(right, alone, rtol=1e-4, atol=1e-5)


def test_tiny_models_are_seeded():
    assert load_model("tiny-llama").fingerprint == load_model("tiny-llama").fingerprint


@pytest.mark.slow
def test_smollm2_knows_paris_and_second_load_uses_the_cache(smollm2, monkeypatch):
    assert smollm2.num_layers == 30
    assert "Paris" in greedy_continuations(smollm2, ["The Eiffel Tower is located in the city of"])[0]

    def no_conversion(_):
        raise AssertionError("the second load converted the GGUF again instead of using the cache")

    monkeypatch.setattr(load_module, "_from_gguf", no_conversion)
    again = load_model("smollm2-135m")
    assert again.fingerprint == smollm2.fingerprint


def test_interrupted_cache_write_is_never_used(tmp_path, monkeypatch):
    """A conversion that dies while saving leaves no folder a later load would trust."""
    from goldenlayers.models.presets import PRESETS

    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))

    class Exploding:
        def save_pretrained(self, folder):
            (folder / "config.json").write_text("{}")
            raise OSError("disk full")

    monkeypatch.setattr(load_module, "_from_gguf", lambda _: (Exploding(), None))
    preset = dataclasses.replace(PRESETS["smollm2-135m"], gguf=lambda: tmp_path / "x.gguf")
    with pytest.raises(OSError, match="disk full"):
        load_module._cached_gguf_folder(preset)
    assert not (tmp_path / "models" / "smollm2-135m").exists()
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.slow
def test_gemma3_loads_from_its_package_and_knows_paris():
    handle = load_model("gemma3-270m")
    assert handle.num_layers == 18 and handle.adapter.name == "gemma"
    assert "Paris" in greedy_continuations(handle, ["The Eiffel Tower is located in the city of"])[0]


def test_hub_model_unreachable_offline_is_a_quick_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GoldenLayersError, match="not in the local Hugging Face cache"):
        load_model("gpt2-xl")


def test_saved_and_reloaded_model_keeps_its_fingerprint(tiny_llama, tmp_path):
    tiny_llama.model.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    assert load_model(str(tmp_path)).fingerprint == tiny_llama.fingerprint
    assert load_model("tiny-gpt2").fingerprint != tiny_llama.fingerprint
