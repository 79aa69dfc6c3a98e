"""Brute force: the matrix A[request, layer, metric] equals editing at each layer by hand."""

import pytest
import torch

from goldenlayers.data import EditRequest, PromptAnswer
from goldenlayers.editing import get_editor
from goldenlayers.evaluate import compute_pre_edit, evaluate
from goldenlayers.locate import LocateError, get_locator

# Prompts end with the subject and carry locality prompts: on a random tiny model the edits then
# change locality differently at different layers, so the best layer is not a trivial tie.
LOCALITY = (PromptAnswer("The capital of Germany is", "Berlin"),
            PromptAnswer("Water is made of", "hydrogen and oxygen"))
REQUESTS = [
    EditRequest("a", "The favourite food of Danielle Darrieux", "Danielle Darrieux",
                "pasta with tomato sauce", "bread", locality=LOCALITY),
    EditRequest("b", "Everyone knows Paris", "Paris", "is the capital of Italy", "France",
                locality=LOCALITY),
]
METRICS = ["rewrite_accuracy", "locality"]
EDITOR = dict(n_context_templates=1, v_num_grad_steps=10)


def by_hand(handle, editor, requests, metrics):
    """Apply, score, and put the saved weights back ourselves, layer by layer."""
    pre = compute_pre_edit(handle, requests)
    matrix = []
    for request in requests:
        row = []
        for layer in range(handle.num_layers):
            weight = handle.adapter.edit_weight(handle.model, layer)
            saved = weight.detach().clone()
            editor.apply(handle, [request], layer)
            values = evaluate(handle, [request], pre=pre, metrics=metrics).per_request[0].values()
            with torch.no_grad():
                weight.copy_(saved)
            row.append([values[m] for m in metrics])
        matrix.append(row)
    return matrix


def test_brute_force_finds_the_same_best_layers_as_editing_by_hand(tiny_gpt2):
    before = {n: p.detach().clone() for n, p in tiny_gpt2.model.named_parameters()}
    locator = get_locator("brute-force", metric="locality", editor_overrides=EDITOR)
    grid = locator.search(tiny_gpt2, REQUESTS)
    for name, p in tiny_gpt2.model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"
    expected = by_hand(tiny_gpt2, get_editor("r-rome", **EDITOR), REQUESTS, METRICS)
    assert grid.layers == (0, 1, 2, 3) and grid.case_ids == ("a", "b")
    for k, metric in enumerate(METRICS):
        assert grid.metric(metric).tolist() == [[cell[k] for cell in row] for row in expected]
    locality = [[cell[1] for cell in row] for row in expected]
    assert len({v for row in locality for v in row}) > 1  # the layers really differ
    layers, scores = grid.sample_optimal("locality")
    for i, row in enumerate(locality):
        best = max(range(len(row)), key=lambda l: (row[l], -l))
        assert layers[i] == best and scores[i] == row[best]
    means = [sum(row[l] for row in locality) / len(locality) for l in range(4)]
    assert grid.golden_layer("locality") == max(range(4), key=lambda l: (means[l], -l))
    scores = locator.locate(tiny_gpt2, REQUESTS)
    assert scores.method == "brute-force" and scores.settings["metric"] == "locality"
    assert scores.golden_layer == grid.golden_layer("locality")
    assert scores.per_request == locality


def test_brute_force_takes_a_subset_of_layers(tiny_gpt2):
    scores = get_locator("brute-force", layers="1,3", editor_overrides=EDITOR).locate(
        tiny_gpt2, REQUESTS[:1])
    assert scores.excluded == [0, 2] and scores.golden_layer in (1, 3)
    assert any("not brute-forced" in note for note in scores.notes)


def test_unknown_metric_and_bad_layers_are_named():
    with pytest.raises(LocateError, match="'accuracy'"):
        get_locator("brute-force", metric="accuracy")
    with pytest.raises(Exception, match="cannot read"):
        get_locator("brute-force", layers="x")


def test_brute_force_computes_every_layers_key_statistics_in_one_pass(tiny_gpt2, monkeypatch,
                                                                     tmp_path):
    from goldenlayers.editing import covariance

    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    monkeypatch.setattr(covariance, "corpus_texts",
                        lambda: ["A first text about cats.", "A second text, about dogs and rain."])
    calls = []
    compute = covariance.compute_second_moments
    monkeypatch.setattr(covariance, "compute_second_moments",
                        lambda handle, layers, *a, **k: calls.append(list(layers))
                        or compute(handle, layers, *a, **k))
    overrides = dict(EDITOR, mom2_n_samples=2, mom2_text_tokens=8)
    get_locator("brute-force", editor="emmet", layers="1,3", editor_overrides=overrides).locate(
        tiny_gpt2, REQUESTS[:1])
    assert calls == [[1, 3]]  # before the first edit, not a pass per layer as each edit needs it
