"""LGA readings on hand-made gradient products: every similarity, combination, fence and direction
against layers worked out by hand; products through JSON; bootstrap stability."""

import json

import numpy as np
import pytest

from goldenlayers.locate import LocateError
from goldenlayers.locate.readings import (DEFAULT_READING, GradientProducts, LGAReading, all_readings,
                                          layer_stability, products_for, reading_layer,
                                          reading_scores, similarity_matrix)

# Four requests, five layers. Request 0 is loud and likes layer 2; requests 1 and 2 like layer 3;
# request 3 likes layer 1; layer 4 is an outlier of request 0 alone.
INNER = np.array([[0.0, 50.0, 100.0, -10.0, 200.0],
                  [1.0, 2.0, 0.0, 3.0, 0.0],
                  [1.0, 2.0, 0.0, 3.0, 0.0],
                  [2.0, 3.0, 1.0, 0.0, 0.0]])
# |g_new|^2 = |g_old|^2 = 200 for request 0 and 4 for the others: cosine = inner / 200, inner / 4.
NORMS = np.array([[200.0] * 5, [4.0] * 5, [4.0] * 5, [4.0] * 5])
# Raw sums S = [4, 57, 101, -4, 200]. Sorted: -4, 4, 57, 101, 200; Q1 = 4, Q3 = 101, IQR = 97.
# k = 1: keep [-93, 198], drop layer 4.  k = 1.5: keep [-141.5, 246.5], drop none.
# Cosine: request 0 -> [0, .25, .5, -.05, 1], others -> inner / 4; S = [1, 2, .75, 1.45, 1].
# Sorted .75, 1, 1, 1.45, 2: Q1 = 1, Q3 = 1.45, IQR = .45; k = 1 keeps [.55, 1.9]: drops layer 1.


def products(weights="edit-matrix", old_answer="dataset") -> GradientProducts:
    return GradientProducts(weights, old_answer, ("a", "b", "c", "d"), INNER, NORMS, NORMS)


def reading(**choices) -> LGAReading:
    return LGAReading(**choices)  # the defaults: edit-matrix/dataset/raw/sum/k1/argmax


@pytest.mark.parametrize("choices, layer", [
    ({}, 2),  # S over layers 0-3: 101 at layer 2
    ({"fence_k": 1.5}, 4),  # the outlier is kept and wins
    ({"fence_k": None}, 4),
    ({"direction": "argmin"}, 3),  # -4
    ({"direction": "argmin", "fence_k": None}, 3),
    ({"similarity": "cosine"}, 3),  # layer 1 (2.0) is the cosine outlier; 1.45 at layer 3
    ({"similarity": "cosine", "fence_k": None}, 1),
    ({"combine": "mean-rank"}, 1),
    ({"combine": "mean-rank", "direction": "argmin"}, 2),
    ({"combine": "mean-rank", "fence_k": None}, 1),
    ({"combine": "votes"}, 3),  # votes: request 0 -> 2, requests 1, 2 -> 3, request 3 -> 1
    ({"combine": "votes", "direction": "argmin"}, 2),  # 2 votes each for 2 and 3: the shallower
    ({"combine": "votes", "fence_k": None}, 3),  # request 0 votes for 4 instead
])
def test_each_reading_picks_the_hand_computed_layer(choices, layer):
    assert reading_layer(products(), reading(**choices)) == layer


def test_reading_scores_are_sums_mean_ranks_or_votes_over_the_kept_layers():
    np.testing.assert_allclose(reading_scores(products(), reading()), [4, 57, 101, -4, 200])
    # Ranks among layers 0-3, best first: request 0: 2, 1, 0, 3; requests 1, 2: 3, 1, 0, 2;
    # request 3: 1, 0, 2, 3. Layer 4 is fenced off and takes no part.
    np.testing.assert_allclose(reading_scores(products(), reading(combine="mean-rank")),
                               [11 / 4, 7 / 4, 12 / 4, 10 / 4, np.nan])
    np.testing.assert_allclose(reading_scores(products(), reading(combine="votes")),
                               [0, 1, 1, 2, np.nan])
    np.testing.assert_allclose(similarity_matrix(products(), "cosine")[0],
                               [0, 0.25, 0.5, -0.05, 1.0])


def test_ties_go_to_the_shallower_layer():
    flat = GradientProducts("edit-matrix", "dataset", ("a", "b"), np.ones((2, 4)), np.ones((2, 4)),
                            np.ones((2, 4)))
    for combine in ("sum", "mean-rank", "votes"):
        for direction in ("argmax", "argmin"):
            assert reading_layer(flat, reading(combine=combine, direction=direction)) == 0


def test_a_reading_needs_products_of_its_weights_and_old_answer():
    with pytest.raises(LocateError, match="weights=mlp, old_answer=dataset"):
        reading_layer(products(), reading(weights="mlp"))
    choices = [products("edit-matrix", "greedy"), products("mlp", "dataset")]
    assert products_for(choices, reading(weights="mlp")) is choices[1]
    with pytest.raises(LocateError, match="no gradient products"):
        products_for(choices, reading())


def test_reading_names_are_stable_and_parse_back():
    assert reading().name == "edit-matrix/dataset/raw/sum/k1/argmax"
    assert DEFAULT_READING.name == "edit-matrix/dataset/cosine/mean-rank/k1/argmax"
    assert reading(fence_k=1.5, combine="votes").name == "edit-matrix/dataset/raw/votes/k1.5/argmax"
    assert reading(fence_k=None, weights="mlp").name == "mlp/dataset/raw/sum/nofence/argmax"
    everything = all_readings()
    assert len(everything) == 2 * 2 * 2 * 3 * 3 * 2 and len({r.name for r in everything}) == 144
    assert DEFAULT_READING in everything
    assert all(LGAReading.parse(r.name) == r for r in everything)
    for bad in ("edit-matrix/dataset/raw/sum/k1", "edit-matrix/dataset/raw/sum/one/argmax",
                "edit-matrix/dataset/raw/median/k1/argmax"):
        with pytest.raises(LocateError):
            LGAReading.parse(bad)


def test_products_round_trip_through_json():
    original = GradientProducts("mlp", "greedy", ("a", "b", "c", "d"), INNER / 3, NORMS * np.pi,
                                NORMS / 7, ("a note",))
    back = GradientProducts.from_dict(json.loads(json.dumps(original.to_dict())))
    assert back.to_dict() == original.to_dict()
    for name in ("inner", "squared_norm_new", "squared_norm_old"):
        assert np.array_equal(getattr(back, name), getattr(original, name))
    assert (back.weights, back.old_answer, back.request_ids, back.notes) == \
        ("mlp", "greedy", ("a", "b", "c", "d"), ("a note",))
    with pytest.raises(LocateError, match="requests=3"):
        GradientProducts("mlp", "greedy", ("a", "b", "c"), INNER, NORMS, NORMS)


def test_stability_shares_sum_to_one_and_are_seeded():
    stability = layer_stability(products(), reading(), resamples=200, seed=3)
    assert stability.resamples == 200 and stability.seed == 3
    assert sum(stability.win_share.values()) == pytest.approx(1.0)
    assert list(stability.win_share.values()) == sorted(stability.win_share.values(), reverse=True)
    assert layer_stability(products(), reading(), resamples=200, seed=3) == stability
    assert len(stability.win_share) > 1  # request 0 alone decides layer 2: resamples disagree


def test_stability_of_identical_requests_is_certain():
    rows = np.tile(INNER[1], (6, 1))
    stability = layer_stability(rows, reading(), resamples=50)
    golden = reading_layer(GradientProducts("edit-matrix", "dataset", tuple("abcdef"), rows,
                                            np.ones_like(rows), np.ones_like(rows)), reading())
    assert stability.win_share == {golden: 1.0}
