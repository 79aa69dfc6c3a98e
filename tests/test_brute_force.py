"""Brute force: the matrix A[request, layer, metric] equals editing at each layer by hand."""

import math

import pytest
import torch

from goldenlayers.data import EditRequest, PromptAnswer
from goldenlayers.editing import get_editor
from goldenlayers.evaluate import compute_pre_edit, evaluate
from goldenlayers.locate import BruteForceResult, LocateError, get_locator

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
    locator = get_locator("brute-force", metrics=METRICS, editor_overrides=EDITOR)
    result = locator.search(tiny_gpt2, REQUESTS)
    for name, p in tiny_gpt2.model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"
    expected = by_hand(tiny_gpt2, get_editor("r-rome", **EDITOR), REQUESTS, METRICS)
    assert result.matrix == expected
    locality = [[cell[1] for cell in row] for row in expected]
    assert len({v for row in locality for v in row}) > 1  # the layers really differ
    for i, row in enumerate(locality):
        best = max(range(len(row)), key=lambda l: (row[l], -l))
        assert result.sample_optimal("locality").layers[i] == best
        assert result.sample_optimal("locality").scores[i] == row[best]
    means = [sum(row[l] for row in locality) / len(locality) for l in range(4)]
    assert result.golden_layers()["locality"] == max(range(4), key=lambda l: (means[l], -l))
    scores = locator.locate(tiny_gpt2, REQUESTS)
    assert scores.method == "brute-force" and scores.settings["metric"] == "rewrite_accuracy"
    assert scores.per_request == [[cell[0] for cell in row] for row in expected]


def _result(matrix, metrics=("m",)) -> BruteForceResult:
    return BruteForceResult("tiny", "f", "r-rome", list(metrics), [str(i) for i in range(len(matrix))],
                            matrix, 1.0, None, {"top_k": 2})


def test_sample_optimum_ties_go_shallower_and_missing_values_are_skipped():
    result = _result([[[0.5], [1.0], [1.0]], [[None], [0.2], [0.1]], [[None], [None], [None]]])
    optimum = result.sample_optimal("m")
    assert optimum.layers == [1, 1, None] and optimum.scores == [1.0, 0.2, None]
    assert result.layer_means("m") == pytest.approx([0.5, 0.6, 0.55])
    scores = result.layer_scores("m")
    assert scores.golden_layer == 1 and scores.top_k == [1, 2] and scores.excluded == []
    assert math.isnan(_result([[[None], [1.0]]]).layer_means("m")[0])
    with pytest.raises(LocateError, match="'other' was not scored"):
        result.values("other")


def test_unknown_metric_is_named():
    with pytest.raises(LocateError, match="'accuracy'"):
        get_locator("brute-force", metrics=["accuracy"])
