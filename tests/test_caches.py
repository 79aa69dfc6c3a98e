"""Damaged cache entries (a truncated model, garbage key statistics, a broken golden-layer file) are
found when read, and rebuilt with a one-line warning; prompts longer than the context are refused."""

from __future__ import annotations

import logging
import types

import pytest
import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing import covariance
from goldenlayers.errors import GoldenLayersError, InputError
from goldenlayers.files.tensors import safetensors_problem
from goldenlayers.models import load as load_module
from goldenlayers.models.tokens import check_fits_context

pytestmark = pytest.mark.usefixtures("one_thread")


def test_damaged_key_statistics_are_recomputed(tiny_llama, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    first = covariance.second_moment(tiny_llama, 1, 16, 32)
    path = covariance.stats_path(tiny_llama, 1, 16, 32)
    good = path.read_bytes()
    for damage in (good[: len(good) // 2], b"garbage" * 10, b""):
        path.write_bytes(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = covariance.second_moment(tiny_llama, 1, 16, 32)
        assert "are damaged" in caplog.text and "recomputing" in caplog.text
        assert torch.equal(again.matrix, first.matrix)
        assert len(path.read_bytes()) == len(good) and safetensors_problem(path) is None  # rebuilt
    caplog.clear()
    covariance.second_moment(tiny_llama, 1, 16, 32)
    assert "damaged" not in caplog.text


def test_a_damaged_golden_layer_cache_is_located_again(tiny_llama, tmp_path, monkeypatch, caplog):
    from goldenlayers.app.locate_job import layer_scores_cached

    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    first = layer_scores_cached(tiny_llama, "counterfact", {"proxy": 2}, method="lga")
    (path,) = (tmp_path / "golden-layers").glob("*.json")
    for damage in ('{"method": "lga", "scores": [1', '{"golden_layer": 99}', "[]"):
        path.write_text(damage)
        with caplog.at_level(logging.WARNING):
            again = layer_scores_cached(tiny_llama, "counterfact", {"proxy": 2}, method="lga")
        assert "damaged" in caplog.text and again.golden_layer == first.golden_layer


def test_a_truncated_cached_model_is_rebuilt(tiny_llama, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    built = []

    def fake_gguf(path):
        built.append(path)
        return tiny_llama.model, tiny_llama.tokenizer

    monkeypatch.setattr(load_module, "_from_gguf", fake_gguf)
    preset = types.SimpleNamespace(name="fake", gguf=lambda: tmp_path / "fake.gguf")
    folder = load_module._cached_gguf_folder(preset)
    assert load_module.model_folder_problem(folder) is None and len(built) == 1
    assert load_module._cached_gguf_folder(preset) == folder and len(built) == 1  # cached
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "truncated" in load_module.model_folder_problem(folder)
    with caplog.at_level(logging.WARNING):
        load_module._cached_gguf_folder(preset)
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text and len(built) == 2
    assert load_module.model_folder_problem(folder) is None
    (folder / "config.json").write_text("{half")
    load_module._cached_gguf_folder(preset)
    assert len(built) == 3 and load_module.model_folder_problem(folder) is None
    (folder / "tokenizer.json").write_bytes(b"\x00garbage")  # every model's tokenizer, once
    assert "tokenizer.json" in load_module.model_folder_problem(folder)
    load_module._cached_gguf_folder(preset)
    assert len(built) == 4 and load_module.model_folder_problem(folder) is None


def test_unsupported_dtypes_are_named():
    with pytest.raises(GoldenLayersError, match="unsupported dtype 'int8'; use one of float32, "
                                                "bfloat16, float16"):
        load_module.resolve_dtype("int8")
    assert load_module.resolve_dtype("bfloat16") is torch.bfloat16


def test_a_prompt_longer_than_the_context_names_the_record(tiny_gpt2):
    fits = EditRequest(case_id="a", prompt="The capital of France is", subject="France",
                       target_new="Rome")
    check_fits_context(tiny_gpt2, [fits])
    huge = EditRequest(case_id="b", prompt="France " * 700_000 + "is", subject="France",
                       target_new="Rome")  # 4.9 MB
    import time

    start = time.perf_counter()
    with pytest.raises(InputError, match=r"request b: the prompt with its answer is about "
                                         r"[\d,]+ tokens .*longer than the 512-token context"):
        check_fits_context(tiny_gpt2, [fits, huge])
    assert time.perf_counter() - start < 10
    long = EditRequest(case_id="c", prompt="France " * 600, subject="France", target_new="Rome")
    with pytest.raises(InputError, match=r"request c: the prompt with its answer is 60\d tokens"):
        check_fits_context(tiny_gpt2, [long])
    with pytest.raises(InputError, match="does not fit the 512-token context"):
        tiny_gpt2.batch([long.prompt])
