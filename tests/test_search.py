"""Trial-edit search and its replay: halving keeps a clearly best layer, never spends more than its
budget, and with brute force's budget is brute force; the replay's regrets equal hand-computed
ones on a stored grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from goldenlayers.errors import GoldenLayersError
from goldenlayers.locate.search import (TRIAL_METRICS, Strategy, brute_force_search,
                                        run_strategy, shortlist_layers, spread_layers,
                                        successive_halving)
from goldenlayers.study.replay import (ReplayGrid, load_replay_grid, replay, search_draws)


def grid_trial(grid: np.ndarray, spent: list | None = None):
    """A trial read from a (requests, layers) grid; both metrics equal; ``spent`` counts cells."""
    def trial(cells):
        if spent is not None:
            spent.extend(cells)
        return np.array([[grid[r, l], grid[r, l]] for r, l in cells])
    return trial


def noisy_grid(num_requests: int, means: list[float], noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(means)[None, :] + rng.uniform(-noise, noise, (num_requests, len(means)))


def test_spread_and_shortlist_cover_the_depth_and_put_lga_first():
    assert spread_layers(30, 4) == [3, 11, 18, 26]  # bin centres: no first or last layer
    assert spread_layers(4, 10) == [0, 1, 2, 3]
    short = shortlist_layers(30, 6, lga_ranking=[29, 12, 13, 0])
    assert short[:3] == [29, 12, 13] and len(set(short)) == 6
    assert set(short[3:]) == {5, 15, 25}  # three spread layers fill the rest
    assert shortlist_layers(30, 4) == [3, 11, 18, 26]  # no LGA: the spread alone
    assert sorted(shortlist_layers(4, 8, [2])) == [0, 1, 2, 3]  # never more than the model has


def test_halving_keeps_the_true_best_layer_when_its_margin_exceeds_the_noise():
    means = [0.5, 0.6, 0.55, 0.8, 0.4, 0.45, 0.5, 0.3]  # layer 3 leads by 0.2
    for seed in range(20):
        grid = noisy_grid(20, means, noise=0.09, seed=seed)  # any mean of trials is within 0.09
        result = successive_halving([0, 7, 3, 5, 1, 2], 20, 30, grid_trial(grid), "overall",
                                    order=list(range(20)))
        assert result.layer == 3, seed


def test_halving_never_spends_more_than_its_budget_and_tries_no_cell_twice():
    grid = noisy_grid(20, [0.1 * l for l in range(12)], noise=0.5, seed=1)
    for budget in (0, 1, 5, 11, 12, 13, 30, 47, 90, 239):
        for m in (2, 3, 4, 6, 8, 10):
            spent: list = []
            strategy = Strategy("sweep-halving", budget, m, "rewrite_accuracy")
            result = run_strategy(strategy, 12, 20, grid_trial(grid, spent), list(range(20)))
            assert result.edits == len(spent) <= budget
            assert len(set(spent)) == len(spent)


def test_a_strategy_with_brute_force_budget_is_brute_force():
    grid = noisy_grid(10, [0.3, 0.31, 0.32, 0.29, 0.305], noise=0.2, seed=3)
    brute = brute_force_search(5, 10, grid_trial(grid), "overall", list(range(10)))
    assert brute.layer == int(np.argmax(grid.mean(axis=0))) and brute.edits == 50
    for name in ("sweep-halving", "lga-halving"):
        result = run_strategy(Strategy(name, 50, 2, "overall"), 5, 10, grid_trial(grid),
                              list(range(10)), lga_ranking=[4, 3, 2, 1, 0])
        assert (result.layer, result.edits) == (brute.layer, 50)


def test_strategies_without_a_budget_and_bad_settings():
    trial = grid_trial(np.zeros((4, 8)))
    assert run_strategy(Strategy("copied"), 8, 4, trial, range(4)).layer == 5
    assert run_strategy(Strategy("copied"), 4, 4, trial, range(4)).layer == 3  # inside the model
    assert run_strategy(Strategy("middle"), 8, 4, trial, range(4)).layer == 4
    assert run_strategy(Strategy("lga"), 8, 4, trial, range(4), [6, 2]).layer == 6
    with pytest.raises(GoldenLayersError, match="needs LGA's ranking"):
        run_strategy(Strategy("lga-halving", 10), 8, 4, trial, range(4))
    with pytest.raises(GoldenLayersError, match="unknown strategy 'best'"):
        Strategy("best")
    with pytest.raises(GoldenLayersError, match="--by must be one of"):
        Strategy(by="locality")


def test_replay_regret_is_the_best_left_out_mean_minus_the_pick():
    # layer 1 is best for every request; layer 0 is copied-like bad, LGA points at layer 2
    rewrite = np.array([[0.0, 1.0, 0.5]] * 6)
    scores = np.stack([rewrite, rewrite], axis=-1)
    similarity = np.array([[0.0, 0.1, 0.9]] * 6)
    grid = ReplayGrid("m x d", tuple(map(str, range(6))), scores, similarity)
    outcomes = replay(grid, [Strategy("lga"), Strategy("middle"),
                             Strategy("brute-force", by="rewrite_accuracy")],
                      draws=5, search_size=2)
    lga, middle, brute = outcomes
    assert set(lga.layers) == {2} and lga.mean("rewrite_accuracy") == pytest.approx(0.5)
    assert set(middle.layers) == {1} and middle.p95("overall") == 0.0
    assert set(brute.layers) == {1} and brute.mean_edits == 6  # 3 layers x 2 requests
    assert search_draws(6, 2, 5).shape == (5, 6)
    with pytest.raises(GoldenLayersError, match="leaves no request"):
        search_draws(6, 6, 5)


def test_replay_reads_lga_from_the_search_requests_that_have_products():
    # request 0 has no products (LGA skipped it: no old answer); the others point at layer 2, so
    # LGA picks layer 2 on every draw, with or without request 0 in the search set
    rewrite = np.array([[0.0, 1.0, 0.5]] * 6)
    scores = np.stack([rewrite, rewrite], axis=-1)
    similarity = np.array([[np.nan] * 3] + [[0.0, 0.1, 0.9]] * 5)
    grid = ReplayGrid("m x d", tuple(map(str, range(6))), scores, similarity)
    (lga,) = replay(grid, [Strategy("lga")], draws=20, search_size=2)
    assert set(lga.layers) == {2}
    only_skipped = ReplayGrid("m x d", grid.case_ids, scores, np.full((6, 3), np.nan))
    with pytest.raises(GoldenLayersError, match="no request of a search set has LGA's products"):
        replay(only_skipped, [Strategy("lga")], draws=2, search_size=2)


def test_replay_reads_a_study_folder(tmp_path):
    rows = []
    for split, cases in (("proxy", ["a", "b"]), ("test", ["c", "d"])):
        for case in cases:
            for layer in range(3):
                value = 1.0 if layer == 1 else 0.0
                rows.append({"model": "m", "dataset": "d", "split": split, "editor": "r-rome",
                             "layer": layer, "case_id": case, "seed": 0, "rewrite_accuracy": value,
                             "overall": value / 2, "seconds": 1.0, "edit_seconds": 1.0,
                             "notes": [], "error": None})
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    grid = load_replay_grid(tmp_path, "d")
    assert grid.case_ids == ("a", "b", "c", "d") and grid.similarity is None
    assert grid.scores[:, 1].tolist() == [[1.0, 0.5]] * 4
    with pytest.raises(GoldenLayersError, match="products are not stored"):
        replay(grid, [Strategy("lga")], draws=2, search_size=2)
    assert TRIAL_METRICS == ("rewrite_accuracy", "overall")


def test_a_regret_interval_re_picks_the_best_layer_in_each_resample():
    from goldenlayers.evaluate import regret_interval

    # two layers tie on average; whichever is picked, some resamples favour the other
    matrix = np.array([[1.0, 0.0], [0.0, 1.0]] * 10)
    interval = regret_interval(matrix, 0)
    assert interval.mean == 0.0 and interval.low == 0.0 and interval.high > 0.1
    # a clearly best layer: its regret interval is zero-width, and the other's excludes zero
    clear = np.array([[1.0, 0.0]] * 8 + [[1.0, 0.5]] * 8)
    assert regret_interval(clear, 0).high == 0.0
    assert regret_interval(clear, 1).mean == pytest.approx(0.75) and regret_interval(clear, 1).low > 0.5
