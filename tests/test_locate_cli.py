"""The `goldenlayers locate` main job, its JSON and plot, and the cached golden layer for --layer auto."""

import json

import pytest
from typer.testing import CliRunner

from goldenlayers.app import locate_job
from goldenlayers.app.locate_job import (golden_layer_cached, layer_scores_cached, proxy_split,
                                         trial_editor_settings, verify_at_layer)
from goldenlayers.app.render import bar, layer_table, stability_line
from goldenlayers.cli import app
from goldenlayers.data import EditRequest
from goldenlayers.engine import CellRow, CellRunner
from goldenlayers.locate import LocateError
from goldenlayers.locate import lga as lga_module
from goldenlayers.locate.staged import StagedLocator

runner = CliRunner()


def test_locate_writes_every_key_the_issue_names(tmp_path):
    out, plot = tmp_path / "out.json", tmp_path / "layers.png"
    result = runner.invoke(app, ["locate", "--method", "lga", "--model", "tiny-llama", "--proxy", "4",
                                 "--json", str(out),
                                 "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("method", "model", "golden_layer", "scores", "excluded", "seconds", "top_k",
                "per_request", "peak_memory_bytes", "settings"):
        assert key in data, key
    assert data["method"] == "lga" and data["model"] == "tiny-llama" and data["proxy"] == 4
    assert len(data["scores"]) == 4 and len(data["per_request"]) == 4
    assert data["golden_layer"] not in data["excluded"]
    assert f"golden layer {data['golden_layer']}" in result.output and "★ golden" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stability = data["stability"]
    assert stability["resamples"] == 1000 and stability["seed"] == 0
    assert sum(stability["win_share"].values()) == pytest.approx(1.0)
    assert set(stability["win_share"]) <= {str(layer) for layer in range(4)}
    assert "bootstrap resamples of the 4 requests: layer" in result.output
    assert data["reading"] == "edit-matrix/dataset/cosine/mean-rank/k1/argmax"


def test_locate_takes_the_lga_reading_options_from_its_settings(tmp_path):
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["locate", "--method", "lga", "--model", "tiny-gpt2", "--proxy", "3",
                                 "--json", str(out),
                                 "-o", "weights=edit-matrix", "-o", "old_answer=dataset",
                                 "--option", "similarity=cosine", "-o", "combine=votes",
                                 "-o", "fence_k=none", "--seed", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["reading"] == "edit-matrix/dataset/cosine/votes/nofence/argmax"  # not the default
    assert data["stability"]["seed"] == 2 and data["excluded"] == []
    assert sum(data["scores"]) == len(data["per_request"])  # one vote per request
    assert "reading: edit-matrix/dataset/cosine/votes/nofence/argmax" in result.output


def test_locate_rejects_an_unknown_method_in_one_line(tmp_path):
    result = runner.invoke(app, ["locate", "--model", "tiny-llama", "--proxy", "2", "--method", "oracle"])
    assert result.exit_code != 0
    assert isinstance(result.exception, LocateError) and "available" in str(result.exception)


def test_golden_layer_is_cached_per_model_data_and_settings(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    first = golden_layer_cached(tiny_llama, "counterfact", {"proxy": 3}, method="lga")
    files = list((tmp_path / "golden-layers").glob("*.json"))
    assert len(files) == 1 and not list((tmp_path / "golden-layers").glob(".*"))

    def no_second_run(*_, **__):
        raise AssertionError("located again instead of reading the cache")

    monkeypatch.setattr(lga_module.LGALocator, "locate", no_second_run)
    assert golden_layer_cached(tiny_llama, "counterfact", {"proxy": 3}, method="lga") == first
    cached = layer_scores_cached(tiny_llama, "counterfact", {"proxy": 3}, method="lga")
    assert cached.golden_layer == first and cached.model_fingerprint == tiny_llama.fingerprint
    with pytest.raises(AssertionError, match="located again"):  # other settings: a new entry
        golden_layer_cached(tiny_llama, "counterfact", {"proxy": 3, "direction": "argmin"},
                            method="lga")


def test_proxy_split_is_seeded_and_disjoint():
    requests = list(range(20))
    a, b = proxy_split(requests, 5, seed=1), proxy_split(requests, 5, seed=1)
    assert a == b and len(a.proxy) == 5 and sorted(a.proxy + a.held_out) == requests
    assert proxy_split(requests, 5, seed=2).proxy != a.proxy
    assert proxy_split(requests, 50).held_out == []
    with pytest.raises(LocateError):
        proxy_split(requests, 0)


def test_bars_and_table_mark_golden_and_excluded_layers():
    from rich.console import Console

    from goldenlayers.locate import LayerScores

    assert bar(1.0, 4) == "████" and bar(0.5, 4) == "██  " and bar(2.0, 2) == "██"
    scores = LayerScores("lga", "m", "f", [1.0, 9.0, 3.0, 2.0], [1], 2, [2, 3], [], 0.1, None, {})
    console = Console(width=120, record=True)
    console.print(layer_table(scores))
    text = console.export_text()
    assert "★ golden" in text and "excluded (outlier)" in text
    assert text.index("│     2 │") < text.index("│     3 │") < text.index("│     0 │") < text.index("│     1 │")


def test_a_longer_bar_is_a_better_layer_whichever_end_of_the_scores_is_best():
    from rich.console import Console

    from goldenlayers.locate import LayerScores

    def bars(scores):
        console = Console(width=120, record=True)
        console.print(layer_table(scores))
        return {line.split("│")[2].strip(): line.split("│")[4].count("█")
                for line in console.export_text().splitlines() if line.count("│") >= 5}

    # a mean rank: layer 1 (rank 1.5) is best, layer 3 (rank 3.5) worst
    ranks = LayerScores("lga", "m", "f", [2.0, 1.5, 3.0, 3.5], [], 1, [1, 0], [], 0.1, None,
                        {"combine": "mean-rank"}, direction="argmin")
    drawn = bars(ranks)
    assert drawn["1"] == 24 and drawn["1"] > drawn["0"] > drawn["2"] > drawn["3"] == 0
    sums = LayerScores("lga", "m", "f", [2.0, 1.5, 3.0, 3.5], [], 3, [3, 2], [], 0.1, None, {})
    drawn = bars(sums)
    assert drawn["3"] == 24 and drawn["3"] > drawn["2"] > drawn["0"] > drawn["1"] == 0


def test_stability_line_names_the_most_frequent_winners():
    from goldenlayers.locate import LayerStability

    stability = LayerStability(1000, 0, {12: 0.64, 10: 0.22, 3: 0.09, 1: 0.03, 2: 0.01, 5: 0.01})
    assert stability_line(stability, 32, shown=3) == (
        "stability over 1000 bootstrap resamples of the 32 requests: layer 12: 64%, layer 10: 22%, "
        "layer 3: 9%, 3 more layers: 5%")


def test_edit_layer_auto_edits_at_the_cached_staged_golden_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path / "cache"))
    args = ["edit", "--model", "tiny-llama", "--prompt", "The mother tongue of {} is", "--subject",
            "Danielle Darrieux", "--target", "English", "--layer", "auto", "--json",
            str(tmp_path / "e.json"), "--set", "v_num_grad_steps=2", "--set", "n_context_templates=1"]
    first = runner.invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    from goldenlayers.editing import get_editor
    from goldenlayers.models import load_model

    # the trial edits were made by the editor the user edits with, its settings too
    trial_editor = trial_editor_settings(get_editor("r-rome", v_num_grad_steps=2,
                                                    n_context_templates=1))
    scores = layer_scores_cached(load_model("tiny-llama"), "counterfact", trial_editor)
    expected = scores.golden_layer
    assert json.loads((tmp_path / "e.json").read_text())["layer"] == expected
    assert scores.method == "staged" and scores.trials.edits == 2 * 4  # 2 per layer of 4
    text = " ".join(first.output.split())
    assert (f"golden layer of tiny-llama on counterfact is {expected} (staged locate, 8 trial "
            "edits)") in text

    def no_second_locate(*_, **__):
        raise AssertionError("--layer auto located again instead of reading its cache")

    monkeypatch.setattr(StagedLocator, "locate", no_second_locate)
    again = runner.invoke(app, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output


def test_verify_runs_narrow_requests_together_and_returns_rows_in_the_callers_order(tiny_llama,
                                                                                   monkeypatch):
    ran = []

    class RecordingRunner(CellRunner):  # no edits: only the order the cells run in
        def pre_edit(self, requests):
            pass

        def run_batch(self, cells):
            ran.append([key.case_id for key, _ in cells])
            return [CellRow(key, {}, 0.0) for key, _ in cells]

    monkeypatch.setattr(locate_job, "CellRunner", RecordingRunner)
    requests = [EditRequest(case_id, "Apple A5 was created by", "Apple A5", target)
                for case_id, target in (("w1", "a firm in California"), ("n1", "Google"),
                                        ("w2", "Rome and nowhere else"), ("n2", "IBM"),
                                        ("n3", "Sony"))]
    rows = verify_at_layer(tiny_llama, requests, layer=1)
    assert ran == [["n1", "n2", "n3", "w1"], ["w2"]]  # batches of 4, narrowest first
    assert [row.key.case_id for row in rows] == ["w1", "n1", "w2", "n2", "n3"]


def test_help_reflows_a_commands_paragraphs_to_the_terminal_width():
    # the docstring is wrapped at 100 columns in the source; its sentences must not break there
    result = runner.invoke(app, ["locate", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    assert "6 layers spread over the depth, halved in rounds" in result.output
