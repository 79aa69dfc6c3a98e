"""The engine: one cell edits, scores and restores; the picker reads each metric's direction; the
intervals and power agree with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from goldenlayers.data import EditRequest, PromptAnswer
from goldenlayers.editing import get_editor
from goldenlayers.engine import CellKey, CellRow, CellRunner, grid_of, pick_index, unit_overall
from goldenlayers.evaluate import (HIGHER_IS_BETTER, bootstrap_interval, evaluate, higher_is_better,
                                   minimum_detectable_difference, paired_comparison)
from goldenlayers.evaluate import metrics as metrics_module

LOCALITY = (PromptAnswer("The capital of Germany is", "Berlin"),)
REQUEST = EditRequest("a", "The favourite food of Danielle Darrieux", "Danielle Darrieux",
                      "pasta with tomato sauce", "bread", locality=LOCALITY)
EDITOR = dict(n_context_templates=1, v_num_grad_steps=20, clamp_norm_factor=50.0, v_lr=1.0,
              v_weight_decay=0.0)


def _key(layer=1, case="a", split="test"):
    return CellKey("tiny-gpt2", "hand", split, "r-rome", layer, case, 0)


def test_a_cell_edits_scores_and_restores_bit_for_bit(tiny_gpt2):
    before = {n: p.detach().clone() for n, p in tiny_gpt2.model.named_parameters()}
    unedited = evaluate(tiny_gpt2, [REQUEST], metrics=["rewrite_accuracy"]).means["rewrite_accuracy"]
    runner = CellRunner(tiny_gpt2, get_editor("r-rome", **EDITOR))
    row = runner.run(_key(layer=2), REQUEST)
    for name, p in tiny_gpt2.model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"
    assert row.error is None and row.edit_seconds > 0 and row.seconds >= row.edit_seconds
    assert set(row.metrics) == {"rewrite_accuracy", "locality", "overall"}
    assert row.metrics["overall"] == pytest.approx(
        (row.metrics["rewrite_accuracy"] + row.metrics["locality"]) / 2)
    assert row.metrics["rewrite_accuracy"] > unedited  # the edit changed the model's answer
    again = CellRunner(tiny_gpt2, get_editor("r-rome", **EDITOR)).run(_key(layer=2), REQUEST)
    assert again.same_result(row)  # a cell's row depends only on its key


def test_a_cell_row_round_trips_through_json():
    row = CellRow(_key(), {"rewrite_accuracy": 0.5, "overall": 0.5}, 1.25, 1.0, ("n",), None)
    back = CellRow.from_dict(__import__("json").loads(row.to_json()))
    assert back == row and back.key.text() == row.key.text()
    assert _key().unit_seed() == _key().unit_seed() != _key(layer=2).unit_seed()


def test_unit_overall_is_the_mean_of_the_teacher_forced_metrics():
    assert unit_overall({"rewrite_accuracy": 1.0, "locality": 0.5, "fluency": 5.0}) == 0.75
    assert unit_overall({"fluency": 5.0}) is None


def test_every_metric_declares_its_direction_and_fluency_is_higher_is_better():
    assert set(HIGHER_IS_BETTER) >= {"rewrite_accuracy", "rephrase_accuracy", "locality",
                                     "portability", "fluency", "overall"}
    assert higher_is_better("fluency")
    with pytest.raises(Exception, match="'speed'"):
        higher_is_better("speed")


def test_the_picker_reads_the_declared_direction(monkeypatch):
    values = [0.2, 0.9, 0.9, 0.1]
    assert pick_index(values, "rewrite_accuracy") == 1  # ties: the shallower layer
    assert pick_index([np.nan, 0.5, 0.7, 0.1], "locality") == 2  # NaN (failed) is the worst
    monkeypatch.setitem(metrics_module.HIGHER_IS_BETTER, "locality", False)
    assert pick_index(values, "locality") == 3


def _rows(matrix, metric="rewrite_accuracy"):
    return [CellRow(_key(layer=layer, case=f"c{i}"), {metric: value}, 1.0)
            for i, row in enumerate(matrix) for layer, value in enumerate(row)]


def test_grid_golden_layer_regret_and_samplewise_optimum():
    grid = grid_of("hand", "test", "r-rome", _rows([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0],
                                                    [0.0, 0.5, 1.0]]))
    assert grid.golden_layer("rewrite_accuracy") == 1
    layers, best = grid.sample_optimal("rewrite_accuracy")
    assert layers.tolist() == [1, 0, 2] and best.tolist() == [1.0, 1.0, 1.0]
    regret = grid.regret("rewrite_accuracy", 2)
    assert regret.mean == pytest.approx((0.5 + 1.0 - 0.5) / 3) and regret.n == 3
    comparison = grid.golden_vs_samplewise("rewrite_accuracy")
    assert comparison.test.n == (3, 3) and comparison.difference.mean == pytest.approx(0.5 / 3)


def test_the_regret_to_the_best_layer_re_picks_it_in_each_resample():
    # layers 0 and 1 tie in expectation (each wins one request); layer 0 is the tie's pick. Of the
    # bootstrap resamples of the two requests, {r0, r0} and the mixed ones keep layer 0 best
    # (regret 0, probability 3/4) and {r1, r1} makes layer 1 best by 1.0 (probability 1/4), so the
    # 95% interval is [0, 1]. Holding layer 0 fixed as the best would read 0 [0, 0].
    grid = grid_of("hand", "test", "r-rome", _rows([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert grid.golden_layer("rewrite_accuracy") == 0
    regret = grid.regret("rewrite_accuracy", 0)
    assert (regret.mean, regret.low, regret.high, regret.n) == (0.0, 0.0, 1.0, 2)
    assert grid.regret_to_best("rewrite_accuracy", 0) == regret
    # layer 2 is never better than the best one: regret 0.5, and 1.0 in the resamples {r0, r0}
    # and {r1, r1}, 0.5 in the mixed ones; its interval is [0.5, 1.0]
    worst = grid.regret("rewrite_accuracy", 2)
    assert (worst.mean, worst.low, worst.high) == (0.5, 0.5, 1.0)
    # an explicit reference is a paired difference of two named layers, with no re-picking
    assert grid.regret("rewrite_accuracy", 0, reference=0).describe() == "0.000 [0.000, 0.000]"
    paired = grid.regret("rewrite_accuracy", 1, reference=0)  # differences 1.0 and -1.0
    assert paired.mean == 0.0 and paired.low == -1.0 and paired.high == 1.0


def test_the_regret_to_the_best_layer_follows_the_declared_direction(monkeypatch):
    grid = grid_of("hand", "test", "r-rome", _rows([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0],
                                                    [0.0, 0.5, 1.0]]))
    monkeypatch.setitem(metrics_module.HIGHER_IS_BETTER, "rewrite_accuracy", False)
    # lower is better: layer 0 (mean 1/3) is best, layer 1 (mean 2.5/3) is worse by 0.5
    assert grid.regret("rewrite_accuracy", 1).mean == pytest.approx(0.5)
    assert grid.regret("rewrite_accuracy", 0).low == 0.0


def test_two_layers_are_compared_request_by_request_with_worse_positive(monkeypatch):
    from scipy import stats
    matrix = [[0.0, 1.0, 0.5], [1.0, 1.0, 0.0], [0.0, 0.5, 1.0], [0.2, 0.9, 0.4]]
    grid = grid_of("hand", "test", "r-rome", _rows(matrix))
    comparison = grid.compare("rewrite_accuracy", 2, 1)  # layer 2 against layer 1
    differences = [row[1] - row[2] for row in matrix]  # 0.5, 1.0, -0.5, 0.5
    assert comparison.difference.mean == pytest.approx(np.mean(differences))
    assert comparison.test.p_value == pytest.approx(
        stats.ttest_rel([row[1] for row in matrix], [row[2] for row in matrix]).pvalue)
    monkeypatch.setitem(metrics_module.HIGHER_IS_BETTER, "rewrite_accuracy", False)
    assert grid.compare("rewrite_accuracy", 2, 1).difference.mean == pytest.approx(
        -np.mean(differences))  # lower is better: layer 2's lower scores make it the better one


def test_a_request_in_flight_waits_for_the_next_read():
    rows = _rows([[0.0, 1.0], [1.0, 1.0]])[:-1]  # request c1 has only layer 0 so far
    grid = grid_of("hand", "test", "r-rome", rows)
    assert grid.case_ids == ("c0",) and grid.layers == (0, 1)


def test_bootstrap_interval_against_hand_computed_cases():
    # Two values: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the central 95%
    # of them runs from 0 to 1.
    interval = bootstrap_interval([0.0, 1.0], resamples=4000)
    assert (interval.mean, interval.low, interval.high, interval.n) == (0.5, 0.0, 1.0, 2)
    constant = bootstrap_interval([0.7, 0.7, 0.7])
    assert (constant.low, constant.high) == pytest.approx((0.7, 0.7))
    wide = bootstrap_interval(np.r_[np.zeros(50), np.ones(50)])
    assert wide.low == pytest.approx(0.5 - 1.96 * 0.05, abs=0.02)  # the normal approximation
    assert wide.high == pytest.approx(0.5 + 1.96 * 0.05, abs=0.02)


def test_minimum_detectable_difference_matches_published_power_tables():
    # R's pwr.t.test(n = 10, sig.level = 0.05, power = 0.8, type = "one.sample") gives d = 0.9958;
    # n = 30 gives d = 0.5292.
    assert minimum_detectable_difference(10, 1.0) == pytest.approx(0.9958, abs=0.001)
    assert minimum_detectable_difference(30, 2.0) == pytest.approx(2 * 0.5292, abs=0.002)
    assert minimum_detectable_difference(30, 0.0) == 0.0
    assert np.isnan(minimum_detectable_difference(1, 1.0))


def test_paired_comparison_reports_n_interval_and_power():
    comparison = paired_comparison([1.0, 1.0, 1.0, 0.5], [1.0, 0.5, 1.0, 0.5])
    assert comparison.test.n == (4, 4) and comparison.difference.mean == pytest.approx(0.125)
    assert comparison.detectable > 0.125  # four pairs cannot see a difference this small
    assert set(comparison.to_dict()) >= {"n", "p_value", "difference", "detectable_at_power"}


# Two data sets number their requests from the same ids: the runner must not hand one request the
# other's pre-edit predictions (issue 30: a study over counterfact,zsre crashed or, where the token
# counts matched, scored locality against the wrong state).
SAME_ID_SAME_LENGTH = EditRequest("a", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux",
                                  "English", "French",
                                  locality=(PromptAnswer("The largest city of Japan is", "Osaka"),))
SAME_ID_OTHER_LENGTH = EditRequest("a", "The mother tongue of Danielle Darrieux is",
                                   "Danielle Darrieux", "English", "French",
                                   locality=(PromptAnswer("Bread is made from",
                                                          "flour water salt and yeast"),))


@pytest.mark.parametrize("other", [SAME_ID_SAME_LENGTH, SAME_ID_OTHER_LENGTH],
                         ids=["same-token-count", "other-token-count"])
def test_requests_of_two_data_sets_with_one_case_id_keep_their_own_pre_edit_state(tiny_gpt2,
                                                                                 other):
    editor = dict(EDITOR, v_num_grad_steps=3)
    first = (CellKey("tiny-gpt2", "one", "test", "r-rome", 2, "a", 0), REQUEST)
    second = (CellKey("tiny-gpt2", "two", "test", "r-rome", 2, "a", 0), other)
    together = CellRunner(tiny_gpt2, get_editor("r-rome", **editor)).run_batch([first, second])
    alone = [CellRunner(tiny_gpt2, get_editor("r-rome", **editor)).run(*cell)
             for cell in (first, second)]
    for mixed, single in zip(together, alone):
        assert mixed.error is None
        assert mixed.metrics["locality"] == pytest.approx(single.metrics["locality"], abs=1e-6)
    # the runner holds one state per locality content, not one per case id
    runner = CellRunner(tiny_gpt2, get_editor("r-rome", **editor))
    state = runner.pre_edit([REQUEST])
    assert other not in state
    assert other in runner.pre_edit([other]) and REQUEST in runner.pre_edit([other])


# --- reuse that can be seen: the store is an argument, never ambient state ------------------------

def test_the_reuse_store_is_passed_explicitly_and_no_module_holds_ambient_state():
    """What an edit shares across layers (models/unchanged.py) reaches the functions that use it
    as their ``reuse`` argument: no ContextVar, thread-local or active store anywhere."""
    import inspect
    from pathlib import Path

    import goldenlayers
    from goldenlayers.editing import EDITORS
    from goldenlayers.editing.keys import template_keys
    from goldenlayers.editing.values import optimise_values, values_for_requests
    from goldenlayers.models import unchanged
    from goldenlayers.models.partial import resume_point

    package = Path(goldenlayers.__file__).parent
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for ambient in ("contextvars", "ContextVar", "threading.local", "active_unchanged"):
            assert ambient not in text, f"{path.relative_to(package)} uses {ambient}"
    assert not hasattr(unchanged.UnchangedWeights, "active")
    users = [resume_point, template_keys, optimise_values, values_for_requests,
             *(editor.prepare for editor in EDITORS.values())]
    for function in users:
        reuse = inspect.signature(function).parameters.get("reuse")
        assert reuse is not None and reuse.default is None, function.__qualname__


def test_run_cells_refuses_an_unknown_executor_before_any_work(tiny_gpt2):
    from goldenlayers.engine import run_cells
    from goldenlayers.errors import GoldenLayersError

    runner = CellRunner(tiny_gpt2, get_editor("r-rome", **EDITOR))
    with pytest.raises(GoldenLayersError, match="unknown executor 'spark'"):
        run_cells([(_key(), REQUEST)], runner, executor="spark")
    assert runner._pre is None  # not even the pre-edit state was computed
    assert run_cells([], runner) == []
