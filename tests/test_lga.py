"""LGA: the cheap Gram-matrix inner products equal explicit autograd gradients; fences; the result.

The gradient comparisons run the tiny models in float64, so they measure the formula rather than
float32 rounding (in float32, padded batches and single rows differ by ~1e-5 relative from kernel
rounding alone).
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from goldenlayers.data import EditRequest
from goldenlayers.locate import LayerScores, LocateError, get_locator
from goldenlayers.engine.ranking import best_layer, rank_layers
from goldenlayers.locate.fences import excluded_layers, tukey_fences
from goldenlayers.locate.answers import first_word, old_answers
from goldenlayers.locate.lga import batch_inner_products, compute_products, gram_inner_products
from goldenlayers.locate.readings import DEFAULT_READING, reading_layer, similarity_matrix
from goldenlayers.models import load_model
from goldenlayers.models.handle import greedy_continuations, target_nll

PROMPTS = ["The mother tongue of Danielle Darrieux is", "Paris is the capital of", "A"]
NEW = ["English and a little Dutch", "Italy", "b c d e f"]
OLD = ["French", "France", "z"]


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def tiny64(request):
    return load_model(request.param, dtype=torch.float64)


def explicit_gradients(handle, prompt: str, target: str, weights: str) -> list[list[torch.Tensor]]:
    """Per layer, dL/dW for each matrix the score uses, by autograd on the weights themselves."""
    adapter, model = handle.adapter, handle.model
    per_layer = [list(adapter.mlp_weights(model, l).values()) if weights == "mlp"
                 else [adapter.edit_weight(model, l)] for l in range(handle.num_layers)]
    params = [p for layer in per_layer for p in layer]
    for p in params:
        p.requires_grad_(True)
    try:
        target_nll(handle, handle.batch([prompt], [target])).sum().backward()
        return [[p.grad.clone() for p in layer] for layer in per_layer]
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None


def explicit_inner_products(handle, prompt, new, old, weights) -> torch.Tensor:
    g_new = explicit_gradients(handle, prompt, new, weights)
    g_old = explicit_gradients(handle, prompt, old, weights)
    return torch.tensor([sum((a * b).sum().item() for a, b in zip(n, o))
                         for n, o in zip(g_new, g_old)], dtype=torch.float64)


def relative_error(fast: torch.Tensor, exact: torch.Tensor) -> float:
    return ((fast.cpu() - exact).abs() / exact.abs()).max().item()


@pytest.mark.parametrize("weights", ["edit-matrix", "mlp"])
def test_fast_inner_product_equals_autograd_single_request(tiny64, weights):
    for prompt, new, old in zip(PROMPTS, NEW, OLD):
        fast = batch_inner_products(tiny64, [prompt], [new], [old], weights)[0, 0]
        exact = explicit_inner_products(tiny64, prompt, new, old, weights)
        assert relative_error(fast, exact) < 1e-4


@pytest.mark.parametrize("weights", ["edit-matrix", "mlp"])
def test_fast_inner_product_equals_autograd_in_a_padded_batch(tiny64, weights):
    """Three requests of different lengths (old and new rows padded together) in one pass."""
    batch = tiny64.batch(PROMPTS * 2, NEW + OLD)
    assert (batch.attention_mask == 0).any()  # the batch really has padding
    fast = batch_inner_products(tiny64, PROMPTS, NEW, OLD, weights)  # (3, B, L)
    for i, (prompt, new, old) in enumerate(zip(PROMPTS, NEW, OLD)):
        assert relative_error(fast[0, i], explicit_inner_products(tiny64, prompt, new, old, weights)) < 1e-4
        norm = torch.tensor([sum((g * g).sum().item() for g in layer)
                             for layer in explicit_gradients(tiny64, prompt, new, weights)])
        assert relative_error(fast[1, i], norm) < 1e-4


def test_gram_form_equals_the_materialised_gradient_product():
    generator = torch.Generator().manual_seed(0)
    d_a, k_a = torch.randn(2, 5, 3, generator=generator), torch.randn(2, 5, 4, generator=generator)
    d_b, k_b = torch.randn(2, 7, 3, generator=generator), torch.randn(2, 7, 4, generator=generator)
    g_a = torch.einsum("btd,btk->bdk", d_a.double(), k_a.double())  # sum_t d_t k_t^T per row
    g_b = torch.einsum("btd,btk->bdk", d_b.double(), k_b.double())
    torch.testing.assert_close(gram_inner_products(d_a, k_a, d_b, k_b), (g_a * g_b).sum(dim=(1, 2)))


def test_lga_leaves_the_model_as_it_was(tiny_llama):
    before = {name: p.detach().clone() for name, p in tiny_llama.model.named_parameters()}
    requests = [EditRequest(str(i), p, p.split()[-1], n, o) for i, (p, n, o) in
                enumerate(zip(PROMPTS[:2], NEW[:2], OLD[:2]))]
    get_locator("lga").locate(tiny_llama, requests)
    for name, p in tiny_llama.model.named_parameters():
        assert not p.requires_grad and p.grad is None
        assert torch.equal(p, before[name]), name


def _requests(n: int, with_old: bool = True) -> list[EditRequest]:
    subjects = ["Danielle Darrieux", "Paris", "Toko Yasuda", "Berlin", "Apple", "Rome"]
    return [EditRequest(str(i), f"The home of {s} is", s, ["Italy", "a big city in Spain"][i % 2],
                        ["France", "Germany"][i % 2] if with_old else None)
            for i, s in enumerate(subjects[:n])]


def test_result_sums_the_per_request_contributions_and_picks_the_kept_argmax(tiny_gpt2):
    requests = _requests(5)
    # the raw, summed reading (the one fixed before the campaign); the default ranks instead
    scores = get_locator("lga", batch_size=2, top_k=3, similarity="raw", combine="sum",
                         fence_k=1.0).locate(tiny_gpt2, requests)
    per_request = torch.tensor(scores.per_request, dtype=torch.float64)
    assert per_request.shape == (5, 4)
    torch.testing.assert_close(per_request.sum(0), torch.tensor(scores.scores, dtype=torch.float64))
    assert scores.excluded == excluded_layers(scores.scores, 1.0)
    kept = [l for l in range(4) if l not in scores.excluded]
    assert scores.golden_layer == max(kept, key=lambda l: scores.scores[l])
    assert scores.top_k == rank_layers(scores.scores, scores.excluded)[:3]
    assert scores.request_ids == ["0", "1", "2", "3", "4"]
    assert scores.seconds > 0 and scores.settings["batch_size"] == 2
    cosine = get_locator("lga", similarity="cosine", combine="sum", fence_k=1.0,
                         weights="mlp").locate(tiny_gpt2, requests)
    assert all(abs(v) <= 1 + 1e-9 for row in cosine.per_request for v in row)
    assert cosine.reading == "mlp/dataset/cosine/sum/k1/argmax"
    assert LayerScores.from_dict(scores.to_dict()) == scores
    assert LayerScores.from_dict(json.loads(scores.to_json())) == scores  # stability's int keys


def test_missing_old_answers_use_the_greedy_answer_and_say_so(tiny_llama):
    requests = _requests(3)[:2] + _requests(3, with_old=False)[2:]
    answers, notes = old_answers(tiny_llama, requests, max_new_tokens=8)
    greedy = greedy_continuations(tiny_llama, [requests[2].prompt], 8)[0]
    assert answers == [requests[0].target_old, requests[1].target_old,
                       first_word(greedy)]
    assert notes and "1 of 3 requests have no old answer" in notes[0]
    scores = get_locator("lga", old_answer="dataset").locate(tiny_llama, requests)
    assert "1 of 3 requests have no old answer" in scores.notes[0]
    assert len(scores.per_request) == (3 if answers[2] else 2)


def test_default_reading_of_the_products_is_the_locators_golden_layer(tiny_gpt2):
    requests = _requests(5)
    located = get_locator("lga", batch_size=2).locate(tiny_gpt2, requests)
    d = DEFAULT_READING
    products = compute_products(tiny_gpt2, requests, (d.weights,), (d.old_answer,), batch_size=2)
    assert [(p.weights, p.old_answer) for p in products] == [(d.weights, d.old_answer)]
    assert reading_layer(products[0], DEFAULT_READING) == located.golden_layer
    assert located.per_request == similarity_matrix(products[0], d.similarity).tolist()
    assert located.reading == DEFAULT_READING.name
    assert sum(located.stability.win_share.values()) == pytest.approx(1.0)
    assert located.stability.resamples == 1000 and located.stability.seed == 0
    votes = get_locator("lga", combine="votes").locate(tiny_gpt2, requests)
    assert votes.golden_layer == reading_layer(products[0], replace(DEFAULT_READING, combine="votes"))
    assert votes.ranking()[0] == votes.golden_layer  # scores are votes: the most is best


def test_lga_names_no_layer_when_no_request_has_an_old_answer(tiny_gpt2, monkeypatch):
    import goldenlayers.locate.lga as lga_module

    requests = _requests(3)  # as a model that ends every prompt at once: no greedy first word
    monkeypatch.setattr(lga_module, "greedy_answers", lambda handle, reqs, tokens: [""] * len(reqs))
    scores = get_locator("lga", old_answer="greedy").locate(tiny_gpt2, requests)
    assert scores.golden_layer is None and scores.scores == [] and scores.top_k == []
    assert scores.notes == ["not applicable: none of the 3 requests has an old answer (the first "
                            "word of the model's greedy continuation) to compare the new target "
                            "with; no golden layer (--old-answer dataset reads the old answers "
                            "another way)"]
    assert LayerScores.from_dict(json.loads(scores.to_json())) == scores
    assert get_locator("lga", old_answer="dataset").locate(tiny_gpt2, requests).golden_layer is not None


def test_greedy_old_answer_is_the_models_own_prediction(tiny_llama):
    requests = _requests(4)  # every request has a data-set old answer
    greedy = [first_word(text) for text in
              greedy_continuations(tiny_llama, [r.prompt for r in requests], 8)]
    assert old_answers(tiny_llama, requests, 8, source="greedy")[0] == greedy
    by_source = {p.old_answer: p for p in compute_products(tiny_llama, requests, ("edit-matrix",))}
    used = [i for i, answer in enumerate(greedy) if answer]
    assert by_source["greedy"].request_ids == tuple(requests[i].case_id for i in used)
    expected = batch_inner_products(tiny_llama, [requests[i].prompt for i in used],
                                    [requests[i].target_new for i in used],
                                    [greedy[i] for i in used], "edit-matrix")
    np.testing.assert_allclose(by_source["greedy"].inner, expected[0].numpy(), rtol=1e-4)
    dataset = batch_inner_products(tiny_llama, [r.prompt for r in requests],
                                   [r.target_new for r in requests],
                                   [r.target_old for r in requests], "edit-matrix")
    np.testing.assert_allclose(by_source["dataset"].inner, dataset[0].numpy(), rtol=1e-4)
    np.testing.assert_allclose(by_source["dataset"].squared_norm_old, dataset[2].numpy(), rtol=1e-4)


def test_first_word_of_a_continuation():
    assert first_word(" Paris, the capital") == "Paris"
    assert first_word("\n  “English” is") == "English"
    assert first_word("   ") == ""


def test_settings_are_validated_and_unknown_keys_named():
    with pytest.raises(LocateError, match="'fence'"):
        get_locator("lga", fence=1.0)
    with pytest.raises(LocateError, match="direction"):
        get_locator("lga", direction="up")
    with pytest.raises(LocateError, match="combine must be one of sum, mean-rank, votes"):
        get_locator("lga", combine="median")
    with pytest.raises(LocateError, match="'normalise'.*similarity"):  # the old name says the new
        get_locator("lga", normalise=True)
    with pytest.raises(LocateError, match=r"unknown locator .gradient-magic.; available: .*lga"):
        get_locator("gradient-magic")


# --- Tukey's fences and the golden-layer choice ---------------------------------------------------

# Sorted: -20, 4, 10, 11, ..., 20, 26, 50 (15 values). Linear-interpolated quartiles:
# Q1 = (11 + 12) / 2 = 11.5, Q3 = (18 + 19) / 2 = 18.5, IQR = 7.
# k = 1.0: keep [4.5, 25.5] -> drop -20, 4, 26, 50.   k = 1.5: keep [1, 29] -> drop -20, 50.
SCORES = [13, 50, 11, 4, 14, 15, -20, 16, 17, 10, 18, 26, 19, 12, 20]


def test_tukey_fences_exclude_exactly_the_outliers():
    assert tukey_fences(SCORES, 1.0) == pytest.approx((4.5, 25.5))
    assert excluded_layers(SCORES, 1.0) == [1, 3, 6, 11]
    assert tukey_fences(SCORES, 1.5) == pytest.approx((1.0, 29.0))
    assert excluded_layers(SCORES, 1.5) == [1, 6]
    assert excluded_layers(SCORES, None) == []


def test_golden_layer_over_kept_layers_in_either_direction():
    assert best_layer(SCORES, excluded_layers(SCORES, 1.0)) == 14  # 20
    assert best_layer(SCORES, excluded_layers(SCORES, 1.5)) == 11  # 26
    assert best_layer(SCORES, excluded_layers(SCORES, 1.0), higher_is_better=False) == 9  # 10
    assert best_layer(SCORES) == 1  # no fences: the outlier wins


def test_ties_go_to_the_shallower_layer_and_fence_values_are_kept():
    assert best_layer([1, 3, 3, 2]) == 1
    assert best_layer([2, 1, 1], higher_is_better=False) == 1
    assert rank_layers([1, 3, 3, 2]) == [1, 2, 3, 0]
    assert rank_layers([1, math.nan, 3], higher_is_better=False) == [0, 2, 1]  # NaN: the worst
    on_fence = [0.0, 1.0, 2.0, 3.0, 4.5]  # Q1 = 1, Q3 = 3, IQR = 2: k = 0.75 puts 4.5 on the fence
    assert excluded_layers(on_fence, 0.75) == []
    assert excluded_layers([1.0, math.nan, 2.0], 1.0) == [1]


@pytest.mark.slow
def test_fast_inner_product_matches_autograd_on_smollm2(smollm2):
    """float32 on the real model, error relative to the gradients' norms (cosine scale): one request
    alone within 1e-4; a padded batch of two within 1e-3 (float32 attention kernels round padded
    batches differently by ~1e-4; the float64 tests above show the formula itself is exact)."""
    prompts, new, old = PROMPTS[:2], NEW[:2], OLD[:2]
    batched = batch_inner_products(smollm2, prompts, new, old, "edit-matrix").cpu()  # (3, B, L)
    for i in range(2):
        alone = batch_inner_products(smollm2, prompts[i:i + 1], new[i:i + 1], old[i:i + 1],
                                     "edit-matrix").cpu()[:, 0]
        exact = explicit_inner_products(smollm2, prompts[i], new[i], old[i], "edit-matrix")
        scale = (alone[1] * alone[2]).sqrt()
        assert ((alone[0] - exact).abs() / scale).max().item() < 1e-4
        assert ((batched[0, i] - exact).abs() / scale).max().item() < 1e-3
    scores = get_locator("lga", batch_size=2).locate(smollm2, _requests(4))
    assert scores.golden_layer not in scores.excluded and len(scores.scores) == 30
