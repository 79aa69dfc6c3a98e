"""The staged locate on a model: trial edits as engine cells, within the budget, and what it reports."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.data import load_dataset
from goldenlayers.locate import LayerScores, get_locator
from goldenlayers.locate.staged import DEFAULT_BUDGET_PER_LAYER, trial_stability

FAST_EDITS = {"v_num_grad_steps": 2, "n_context_templates": 1}  # a trial edit in about a second
runner = CliRunner()


def test_stability_counts_the_resamples_each_layer_wins_and_shares_ties():
    always = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert trial_stability(([4, 9], always), seed=0).win_share == {4: 1.0}
    tied = trial_stability(([9, 4], np.ones((3, 2))), seed=0)
    assert tied.win_share == {4: 0.5, 9: 0.5} and tied.requests == 3
    # one request in which layer 7 wins by 1 and one in which it loses by 1: each resample of two
    # draws both (tie, shared), the first twice (7 wins) or the second twice (3 wins): 1/2, 1/4, 1/4
    split = trial_stability(([3, 7], np.array([[0.0, 1.0], [1.0, 0.0]])), seed=0, resamples=4000)
    assert split.win_share[7] == pytest.approx(0.5, abs=0.03)
    assert split.win_share[3] == pytest.approx(0.5, abs=0.03)
    assert trial_stability(([3], np.ones((4, 1))), seed=0) is None


def test_staged_locate_spends_at_most_its_budget_on_real_cells(tiny_llama):
    requests = load_dataset("counterfact").requests[:4]
    scores = get_locator("staged", budget=6, shortlist=4, editor_overrides=FAST_EDITS).locate(
        tiny_llama, requests)
    trials = scores.trials
    assert trials.budget == 6 and 0 < trials.edits <= 6
    assert sum(t.edits for t in trials.layers) == trials.edits  # each trial edit is one cell
    tried = {t.layer for t in trials.layers}
    assert scores.golden_layer == trials.layer and scores.golden_layer in tried
    assert all(np.isnan(scores.scores[layer]) for layer in range(4) if layer not in tried)
    assert scores.top_k[0] == scores.golden_layer
    again = LayerScores.from_dict(json.loads(json.dumps(scores.to_dict())))
    assert again.trials == trials and again.stability == scores.stability


def test_batching_the_trial_requests_changes_neither_the_pick_nor_the_trial_means(tiny_llama):
    requests = load_dataset("counterfact").requests[:6]
    found = {size: get_locator("staged", budget=12, shortlist=4, batch_requests=size,
                               editor_overrides=FAST_EDITS).locate(tiny_llama, requests).trials
             for size in (1, 8)}
    assert max(t.edits for t in found[8].layers) >= 2  # a round edited a layer on several requests
    assert found[1].layer == found[8].layer and found[1].edits == found[8].edits
    for one, batched in zip(found[1].layers, found[8].layers):
        assert one.layer == batched.layer
        assert one.means == pytest.approx(batched.means, abs=1e-6)


def test_a_budget_of_zero_is_lga_alone(tiny_llama):
    requests = load_dataset("counterfact").requests[:4]
    staged = get_locator("staged", budget=0).locate(tiny_llama, requests)
    lga = get_locator("lga").locate(tiny_llama, requests)
    assert staged.trials.edits == 0 and staged.golden_layer == lga.golden_layer
    assert np.array_equal(staged.scores, lga.scores, equal_nan=True) and staged.method == "staged"


def test_the_default_budget_grows_with_the_model():
    settings = get_locator("staged").settings
    assert settings.budget_for(30) == DEFAULT_BUDGET_PER_LAYER * 30 and settings.by == "rewrite_accuracy"


def test_locate_runs_the_staged_default_and_prints_the_budget_and_the_trials(tmp_path):
    out = tmp_path / "staged.json"
    result = runner.invoke(app, ["locate", "--model", "tiny-gpt2", "--proxy", "4", "--budget", "6",
                                 "--by", "overall", "-o", json_option(), "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["method"] == "staged" and data["trials"]["budget"] == 6
    assert data["trials"]["by"] == "overall" and data["trials"]["edits"] <= 6
    text = " ".join(result.output.split())
    assert f"trial edits: {data['trials']['edits']} of a budget of 6" in text
    assert f"pick layer {data['golden_layer']}: rewrite accuracy" in text and "Overall" in text
    assert "runner-up" in text and "pick vs runner-up" in text


def json_option() -> str:
    return "editor_overrides=" + json.dumps(FAST_EDITS)


def test_the_table_leads_with_the_pick_and_counts_the_layers_not_tried(tiny_llama):
    from rich.console import Console

    from goldenlayers.app.render import layer_table

    requests = load_dataset("counterfact").requests[:4]
    scores = get_locator("staged", budget=4, shortlist=2, editor_overrides=FAST_EDITS).locate(
        tiny_llama, requests)
    console = Console(width=120, record=True)
    console.print(layer_table(scores))
    text = console.export_text()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and rows[0].split("│")[2].strip() == str(scores.golden_layer)
    assert "2 layers not tried" in text and "trial rewrite accuracy" in text
