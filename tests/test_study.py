"""The study: settings, the run folder (manifest and result files), and end-to-end studies on the
tiny model: every table and figure, resuming after SIGKILL, the Ray executor against the local
one, and brute force in ``locate`` naming the study's golden layer.

(The analysis and report on synthetic rows with hand-chosen numbers: test_report.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from dataclasses import dataclass

import pytest

from goldenlayers.engine import CellKey, CellRow, LocateRow, ResultsFolder
from goldenlayers.locate import Locator
from goldenlayers.locate.measure import measure
from goldenlayers.errors import GoldenLayersError
from goldenlayers.report import write_report
from goldenlayers.study import SettingsMismatch, StudySettings, parse_layers, run_study
from goldenlayers.study.store import FORMAT, merged_manifest, write_manifest


# --- settings -------------------------------------------------------------------------------------

def test_parse_layers_forms():
    assert parse_layers("all", 6) == [0, 1, 2, 3, 4, 5]
    assert parse_layers("all:2", 6) == [0, 2, 4]
    assert parse_layers("1,3-5", 6) == [1, 3, 4, 5]
    assert parse_layers("0-29:3,29", 30) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]
    assert StudySettings("m", "zsre").layers == "all"  # every layer unless told otherwise


@pytest.mark.parametrize("spec, message", [("7", "layers 0-5"), ("x", "cannot read"),
                                           ("4-2", "empty range"), ("auto", "cannot read")])
def test_parse_layers_errors_name_the_problem(spec, message):
    with pytest.raises(GoldenLayersError, match=message):
        parse_layers(spec, 6)


def test_settings_validate_and_reject_unknown_keys():
    with pytest.raises(GoldenLayersError, match="proxy_fraction"):
        StudySettings("tiny-llama", ("counterfact",), proxy_fraction=1.5)
    with pytest.raises(GoldenLayersError, match="'batch'"):
        StudySettings.from_dict({"model": "tiny-llama", "datasets": ("zsre",), "batch": 3})
    with pytest.raises(GoldenLayersError, match="'accuracy'"):
        StudySettings("tiny-llama", ("zsre",), metrics=("accuracy",))
    with pytest.raises(GoldenLayersError, match="fluency_size"):
        StudySettings("tiny-llama", ("zsre",), fluency_size=-1)
    assert StudySettings("m", "zsre, counterfact").datasets == ("zsre", "counterfact")


def test_cells_go_by_recomputed_columns_within_each_split(tiny_llama):
    """Consecutive requests share a value batch: narrow ones go together, wide ones together;
    the split and the proxy-then-test order stay, and each request's cells keep their order."""
    from goldenlayers.data import EditRequest
    from goldenlayers.engine import batching_order
    from goldenlayers.study.run import DatasetPlan, study_cells

    def request(case_id, target):
        return EditRequest(case_id, "Apple A5 was created by", "Apple A5", target)

    plan = DatasetPlan("d", ("rewrite_accuracy",), proxy=(request("p1", "a firm in California"),
                                                          request("p2", "Google")),
                       test=(request("t1", "Google"), request("t2", "Rome and nowhere else"),
                             request("t3", "IBM")), pool=(), digest="x")
    cells = study_cells([plan], StudySettings("tiny-llama", ("d",)), tiny_llama, [1, 0])
    assert all(request.case_id == key.case_id for key, request in cells)
    ordered = [cells[i][0] for i in batching_order(cells, tiny_llama.tokenizer)]
    assert [(key.split, key.case_id, key.layer) for key in ordered][::2] == [
        ("proxy", "p2", 1), ("proxy", "p1", 1), ("test", "t1", 1), ("test", "t3", 1),
        ("test", "t2", 1)]
    assert [key.layer for key in ordered] == [1, 0] * 5
    # sorted only within windows (here of 2 requests), so a stopped run has done nearly a prefix
    windowed = batching_order(cells, tiny_llama.tokenizer, window=2)
    assert [cells[i][0].case_id for i in windowed][::2] == ["p2", "p1", "t1", "t2", "t3"]


def test_each_worker_keeps_to_its_block_and_splits_the_last_one_when_idle():
    from goldenlayers.engine import request_blocks
    from goldenlayers.engine.ray_workers import BlockQueue

    keys = [CellKey("m", "d", "test", "r-rome", layer, case, 0)
            for case in "abcdef" for layer in range(6)]
    blocks = request_blocks(keys, requests_per_batch=2)  # 3 blocks of 6 layers
    queue = BlockQueue(blocks)
    handed: dict[int, list[tuple[str, int]]] = {0: [], 1: []}
    for turn in [0, 1] * 6 + [0, 0, 1, 0, 0, 0, 1]:
        batch = queue.next_for(turn)
        if batch is not None:
            handed[turn].append(("".join(keys[i].case_id for i in batch), keys[batch[0]].layer))
    # each kept to its block, layer by layer; worker 1, done first, took the upper half of the
    # four layers worker 0 had left of the last block, and worker 0 the last one of that half
    assert handed[0] == [("ab", layer) for layer in range(6)] + [("ef", layer) for layer in
                                                                 (0, 1, 2, 3, 5)]
    assert handed[1] == [("cd", layer) for layer in range(6)] + [("ef", 4)]
    queue = BlockQueue(blocks)
    for worker in (0, 1, 2):
        queue.next_for(worker)
    assert queue.next_for(0) == blocks[0][1]  # its own block's next layer
    while queue.next_for(0) is not None:
        pass  # worker 0 finishes its block, then halves of the others' until none is left
    taken = [queue.next_for(worker) for worker in (1, 2)]
    assert taken == [None, None]


# --- the run folder ---------------------------------------------------------------------------------

def _manifest(seed=0, test_size=6, digest="d1", editor_steps=5):
    fixed = StudySettings("tiny-llama", ("counterfact",), seed=seed, test_size=test_size).fixed()
    return {"format": FORMAT, "model": "tiny-llama", "model_fingerprint": "abc", "num_layers": 4,
            "fixed": fixed, "editors": {"r-rome": {"v_num_grad_steps": editor_steps}},
            "datasets": {"counterfact": {"digest": digest, "proxy": 3, "test": test_size}},
            "layers": {"counterfact/r-rome": [0, 1, 2, 3]}}


def test_run_folder_refuses_other_settings_and_changed_data(tmp_path):
    write_manifest(tmp_path, _manifest())
    assert merged_manifest(tmp_path, _manifest()) == _manifest()  # the same settings reopen it
    with pytest.raises(SettingsMismatch) as error:
        merged_manifest(tmp_path, _manifest(seed=1, test_size=3))
    assert "seed: 0 there, 1 now" in str(error.value)
    assert "test_size: 6 there, 3 now" in str(error.value)
    assert "proxy_size" not in str(error.value)
    with pytest.raises(SettingsMismatch, match="the records of data set 'counterfact' changed"):
        merged_manifest(tmp_path, _manifest(digest="d2"))
    with pytest.raises(SettingsMismatch, match="the settings of editor 'r-rome' changed"):
        merged_manifest(tmp_path, _manifest(editor_steps=25))


def test_run_folder_grows_by_data_sets_and_editors(tmp_path):
    write_manifest(tmp_path, _manifest())
    other = _manifest()
    other["datasets"] = {"zsre": {"digest": "z", "proxy": 3, "test": 6}}
    other["editors"] = {"rome": {}}
    merged = merged_manifest(tmp_path, other)
    assert set(merged["datasets"]) == {"counterfact", "zsre"}
    assert set(merged["editors"]) == {"r-rome", "rome"}


def _row(case="c/1", layer=2, **metrics):
    return CellRow(CellKey("tiny", "zsre", "test", "r-rome", layer, case, 0), metrics, 0.5, 0.2)


def test_result_files_keep_each_row_and_cut_a_torn_line(tmp_path):
    folder = ResultsFolder(tmp_path)
    first = _row(rewrite_accuracy=0.75, overall=0.5)
    folder.add_cell(first)
    path = folder.cells_file("zsre")
    with open(path, "a") as file:  # a writer killed mid-line
        file.write('{"model": "tiny", "data')
    assert folder.cells() == [first]  # a torn last line is skipped when read ...
    second = _row(layer=3, rewrite_accuracy=1.0)
    folder.add_cell(second)  # ... and cut before the next row is appended
    assert folder.cells() == [first, second]
    assert path.read_text().count("\n") == 2
    located = LocateRow("tiny", "zsre", "proxy", "lga", 0, {"scores": [1.0, 2.0]}, 3.0)
    folder.add_locate(located)
    assert folder.locate_rows() == [located]
    assert [r.key for r in folder.cells()] == [first.key, second.key]  # locate rows kept apart


def test_a_garbage_results_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "zsre.jsonl").write_text('{"model": "tiny"}\nnot json\n{"model": "x"}\n')
    with pytest.raises(GoldenLayersError, match=r"zsre.jsonl: line 1 is not a valid results file"):
        ResultsFolder(tmp_path).cells()
    (tmp_path / "zsre.jsonl").write_text(_row().to_json() + "\nnot json\n" + _row(layer=1).to_json() + "\n")
    with pytest.raises(GoldenLayersError, match=r"zsre.jsonl: line 2 is not a valid results file"):
        ResultsFolder(tmp_path).cells()


# --- end to end on the tiny model -------------------------------------------------------------------

# A short, strong value optimisation: a random 4-layer model then shows edits that differ by layer.
EDITOR = {"v_num_grad_steps": 8, "n_context_templates": 2, "clamp_norm_factor": 50.0,
          "v_weight_decay": 0.0, "v_lr": 1.0}
E2E_ARGS = ["--model", "tiny-llama", "--data", "counterfact,zsre", "--test-size", "2",
            "--proxy-size", "1", "--seed", "0", "--layers", "all",
            *(f"--set={key}={value}" for key, value in EDITOR.items())]
# The default metrics leave fluency out (100 generated tokens per edit); the synthetic store above
# covers its table.


def _settings(**changes):
    values = dict(model="tiny-llama", datasets=("counterfact", "zsre"), test_size=2, proxy_size=1,
                  seed=0, layers="all", editor_overrides=EDITOR)
    return StudySettings(**{**values, **changes})


def _results(run_dir) -> dict[str, dict]:
    """Cell key -> what must not depend on the run: metrics and error (not the costs)."""
    return {row.key.text(): {"metrics": row.metrics, "error": row.error}
            for row in ResultsFolder(run_dir).cells()}


def _assert_same_results(a: dict, b: dict, tolerance: float = 0.0) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if tolerance == 0.0:
            assert a[key] == b[key], key
        else:
            assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True) or \
                _close(a[key], b[key], tolerance), key


def _close(x, y, tolerance) -> bool:
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k], tolerance) for k in x)
    if isinstance(x, list):
        return len(x) == len(y) and all(_close(u, v, tolerance) for u, v in zip(x, y))
    if isinstance(x, float) or isinstance(y, float):
        return abs(x - y) <= tolerance * max(1.0, abs(x))
    return x == y


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """One uninterrupted tiny study, in this process: the reference the other runs must equal."""
    run_dir = tmp_path_factory.mktemp("study-local")
    run = run_study(_settings(), run_dir)
    return run_dir, run


def test_tiny_study_produces_every_table_and_figure(local_run):
    run_dir, run = local_run
    assert run.done_before == 0 and run.done_now == run.planned
    files = write_report(run_dir, min_test_requests=2)
    results = files.results
    # 2 data sets x (1 proxy + 2 test requests) x 4 layers; then per data set LGA, CMA and the
    # gradient products of the proxy and of the test requests (the replay draws from both).
    assert run.planned == 2 * (1 + 2) * 4
    rows = ResultsFolder(run_dir).locate_rows()
    assert len(rows) == 2 * 4
    assert {(r.dataset, r.split) for r in rows if r.method == "lga-products"} == {
        (d, s) for d in ("counterfact", "zsre") for s in ("proxy", "test")}
    assert set(results.test) == {"counterfact", "zsre"} and results.test["zsre"].layers == (0, 1, 2, 3)
    assert "portability" in results.test["zsre"].metrics  # each data set keeps its own metrics
    assert "portability" not in results.test["counterfact"].metrics
    for dataset in results.datasets:
        means = results.test[dataset].layer_means("rewrite_accuracy")
        golden = results.test[dataset].golden_layer("rewrite_accuracy")
        assert means[golden] == means.max()
        table2 = {r.selector: r for r in results.selection if r.dataset == dataset}
        assert table2["LGA"].layer == results.locators[(dataset, "lga")].golden_layer
        assert table2["LGA"].metrics["rewrite_accuracy"] == pytest.approx(means[table2["LGA"].layer])
        regret = table2["LGA"].regret["rewrite_accuracy"]
        assert regret.n == 2 and regret.low <= regret.mean <= regret.high
        assert table2["BF test (golden)"].regret["rewrite_accuracy"].mean == 0.0
    assert all(set(r.locator_seconds) == {"lga", "cma"} and min(r.locator_seconds.values()) > 0
               and r.bf_seconds > 0 for r in results.runtimes)
    titles = " ".join(t.title for t in files.tables)
    for expected in ("Table 1", "Table 2", "Table 3", "Figure 2", "Figure 4", "Locators"):
        assert expected in titles
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == len(files.figures) == 4
    report = files.markdown.read_text()
    assert "[95% CI]" in report and "detectable (80% power)" in report


def test_rerun_does_nothing_and_other_settings_are_refused(local_run):
    run_dir, run = local_run
    before = _results(run_dir)
    again = run_study(_settings(), run_dir)
    assert (again.done_now, again.done_before) == (0, run.planned)
    with pytest.raises(SettingsMismatch, match="seed: 0 there, 1 now"):
        run_study(_settings(seed=1), run_dir)
    assert _results(run_dir) == before


def _count_cells(run_dir) -> int:
    return sum(path.read_text().count("\n") for path in run_dir.glob("*.jsonl")
               if not path.name.endswith(".locate.jsonl"))


def test_killed_study_resumes_to_the_same_results(local_run, tmp_path):
    reference_dir, reference = local_run
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "goldenlayers.cli", "study", *E2E_ARGS, "--out", str(run_dir)]
    process = subprocess.Popen(command, env={**os.environ, "GOLDENLAYERS_PROGRESS": "0"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _count_cells(run_dir) < 3:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the study made no progress"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    after_kill = _results(run_dir)
    assert 0 < len(after_kill) < reference.planned  # killed mid-run
    rerun = run_study(_settings(), run_dir)
    assert rerun.done_before == len(after_kill)
    assert rerun.done_now == reference.planned - len(after_kill)  # no finished unit done again
    resumed = _results(run_dir)
    assert {key: resumed[key] for key in after_kill} == after_kill  # finished work kept as it was
    _assert_same_results(resumed, _results(reference_dir))


def test_ray_executor_gives_the_results_of_the_local_one(local_run, tmp_path):
    pytest.importorskip("ray")
    reference_dir, reference = local_run
    run = run_study(_settings(), tmp_path / "ray", executor="ray", workers=2, num_cpus=2)
    assert run.done_now == reference.planned
    _assert_same_results(_results(tmp_path / "ray"), _results(reference_dir), tolerance=1e-6)


@pytest.mark.slow
def test_small_study_on_smollm2_edits_at_its_golden_layer(tmp_path):
    """SmolLM2-135M, one data set, two layers: the golden layer's edits take (R-ROME writes the new
    answer), and the report names the locators' layers."""
    # CounterFact: LGA's default reads the model's own greedy answers, and SmolLM2 has one for its
    # prompts (for zsRE's questions it mostly has none, and LGA would say "not applicable")
    settings = StudySettings("smollm2-135m", ("counterfact",), test_size=2, proxy_size=1,
                             layers="4,15")
    run = run_study(settings, tmp_path)
    assert run.done_now == run.planned
    files = write_report(tmp_path, min_test_requests=2)
    results = files.results
    test = results.test["counterfact"]
    assert test.score_at("rewrite_accuracy", test.golden_layer("rewrite_accuracy")) >= 0.5
    layer = results.locators[("counterfact", "lga")].golden_layer
    assert 0 <= layer < 30
    assert f"| counterfact | LGA | {layer} |" in files.markdown.read_text()


def test_locate_brute_force_and_study_name_the_same_golden_layer(local_run):
    """The same cells (keys and seeds) through ``locate``'s brute force and the study's grid."""
    from goldenlayers.data import load_dataset, split
    from goldenlayers.locate import get_locator
    from goldenlayers.models import load_model

    run_dir, _ = local_run
    results = write_report(run_dir, run_dir / "again", min_test_requests=1).results
    parts = split(load_dataset("counterfact").requests, proxy_fraction=0.1, seed=0)
    locator = get_locator("brute-force", editor_overrides=EDITOR, dataset="counterfact", seed=0)
    scores = locator.locate(load_model("tiny-llama"), list(parts.proxy)[:1])
    grid = results.proxy["counterfact"]
    assert scores.golden_layer == grid.golden_layer("rewrite_accuracy")
    assert scores.scores == pytest.approx(list(grid.layer_means("rewrite_accuracy")))


def test_campaign_report_chooses_each_pairs_reading_on_the_other_pairs(local_run, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from goldenlayers.cli import app
    from campaign.report import load_campaign, main as campaign_report
    from campaign.rules import RuleFiveChoice, default_choice, out_of_sample
    from goldenlayers.locate.readings import DEFAULT_READING

    run_dir, _ = local_run
    shutil.copytree(run_dir, tmp_path / "results" / "tiny-llama",
                    ignore=shutil.ignore_patterns("report*", "figures", "again"))
    few = load_campaign(tmp_path / "results")  # the tiny study's few test requests: no claims
    assert all(not p.readings and not p.proxy_size for p in few.pairs) and few.held_out == []
    campaign = load_campaign(tmp_path / "results", min_test_requests=1)
    assert [str(p.pair) for p in campaign.pairs] == ["tiny-llama x counterfact", "tiny-llama x zsre"]
    assert all(p.complete and len(p.readings) == 144 for p in campaign.pairs)
    by_pair = {p.pair: p.readings for p in campaign.pairs}
    for choice in campaign.held_out:  # leave one pair out: chosen on the other pair alone
        (other,) = choice.chosen_on
        best = min(by_pair[other], key=lambda r: r.regret["rewrite_accuracy"].mean)
        assert choice.mean_regret_elsewhere == best.regret["rewrite_accuracy"].mean
        here = next(r for r in by_pair[choice.pair] if r.reading == choice.reading)
        assert choice.regret == here.regret and choice.layer == here.layer
    assert campaign.default is None  # rule 5 waits for three complete pairs
    choice = default_choice(by_pair, min_pairs=2)
    mean_of = {name: sum(next(r for r in by_pair[p] if r.reading == name).regret[
        "rewrite_accuracy"].mean for p in by_pair) / 2 for name in (r.reading for r in by_pair[
            campaign.pairs[0].pair])}
    assert choice.mean_regret == pytest.approx(min(mean_of.values()))
    assert choice.reading == min(mean_of, key=mean_of.get)  # ties: the earlier reading
    # locate's default, out of sample: on every pair it was not chosen on, and only there
    zsre = campaign.pairs[1].pair
    rule_five = RuleFiveChoice(DEFAULT_READING, ("tiny-llama x counterfact",), "a test")
    outside = out_of_sample(by_pair, rule_five)
    assert outside == [r for r in by_pair[zsre] if r.reading == DEFAULT_READING.name]
    # rule 5b's measure: with one proxy request and no pool, every draw of one is that request
    from goldenlayers.study.lga_readings import resampled_regrets, stored_products
    pair = campaign.pairs[1]
    located = pair.results.locate_rows
    one = resampled_regrets(pair.pair, pair.results.test["zsre"],
                            stored_products(located, "zsre", "proxy"), [], size=1)
    assert [(r.reading, r.layer, r.regret["rewrite_accuracy"].mean) for r in one] == [
        (r.reading, r.layer, r.regret["rewrite_accuracy"].mean) for r in pair.readings]
    assert all(not p.resampled for p in campaign.pairs)  # 20 requests per draw: none here
    assert campaign.rule_five_b is None and campaign.compared == []
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results"), "--out",
                                      str(tmp_path / "few")])
    assert result.exit_code == 0, result.output
    assert "not measured (n test < 20), so in no table" in (
        tmp_path / "few" / "tiny-llama" / "report.md").read_text()
    assert not (tmp_path / "few" / "campaign.md").exists()  # the library knows no campaign
    campaign_report([str(tmp_path / "results"), "--out", str(tmp_path / "few")])
    assert "not measured (n test < 20)" in (tmp_path / "few" / "campaign.md").read_text()
    campaign_report([str(tmp_path / "results"), "--out", str(tmp_path / "out"),
                     "--min-test-requests", "1"])
    text = (tmp_path / "out" / "campaign.md").read_text()
    assert "Rule 5" in text and "needs three complete pairs" in text
    # every default so far was chosen on SmolLM2 pairs, so both tiny pairs are out of sample for it
    assert f"(in force) | tiny-llama x zsre | {outside[0].layer} |" in text
    assert "Held out" in text and "tiny-llama x zsre" in text and "Proxy-size curve" in text
    assert "Rules 5 and 5b out of sample" in text and "No pair has completed since." in text
    assert (tmp_path / "out" / "tiny-llama" / "report.md").exists()


@dataclass
class MiddleSettings:
    top_k: int = 5
    seed: int = 0
    pull: float = 1.0  # an option of this method only


class MiddleLocator(Locator):
    """A locator that names the middle layer: the registry's test, defined nowhere else."""

    name = "middle"
    settings_class = MiddleSettings
    in_study = True
    score_label = "closeness to the middle"

    def locate(self, handle, requests):
        with measure(handle.device) as cost:
            middle = (handle.num_layers - 1) / 2
            scores = [-self.settings.pull * abs(layer - middle) for layer in range(handle.num_layers)]
        return self.result(handle, cost, scores, [scores] * len(requests),
                           [r.case_id for r in requests], notes=["the middle, always"])


def test_a_registered_locator_appears_in_locate_study_and_report(local_run, tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from goldenlayers.cli import app
    from goldenlayers.locate import LOCATORS

    monkeypatch.setitem(LOCATORS, "middle", MiddleLocator)
    runner = CliRunner()
    out = tmp_path / "middle.json"
    result = runner.invoke(app, ["locate", "--model", "tiny-llama", "--proxy", "2", "--method",
                                 "middle", "-o", "pull=2.5", "--top-k", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    located = json.loads(out.read_text())
    # 4 layers, middle 1.5: layers 1 and 2 tie, the shallower wins
    assert (located["golden_layer"], located["top_k"]) == (1, [1, 2, 0])
    assert located["settings"] == {"top_k": 3, "seed": 0, "pull": 2.5}
    assert located["scores"] == [-3.75, -1.25, -1.25, -3.75]
    refused = runner.invoke(app, ["locate", "--model", "tiny-llama", "--method", "middle",
                                  "-o", "fence_k=1"])
    assert "unknown MiddleSettings setting 'fence_k'; valid: top_k, seed, pull" in str(
        refused.exception)
    listed = runner.invoke(app, ["locators"])
    assert listed.exit_code == 0 and "middle" in listed.output and "pull" in listed.output

    run_dir, _ = local_run
    folder = tmp_path / "study"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("report*", "figures", "again"))
    run = run_study(_settings(), folder)  # every cell is there: only the new locator runs
    assert run.done_now == 0
    rows = [row for row in ResultsFolder(folder).locate_rows() if row.method == "middle"]
    assert sorted(row.dataset for row in rows) == ["counterfact", "zsre"]
    files = write_report(folder, min_test_requests=2)
    results = files.results
    selected = {r.selector: r.layer for r in results.selection if r.dataset == "zsre"}
    assert selected["MIDDLE"] == 1 and "CMA" in selected
    assert all(r.locator_seconds.keys() == {"lga", "cma", "middle"} for r in results.runtimes)
    middle = next(a for a in results.agreement if a.dataset == "zsre" and a.method == "middle")
    assert middle.layer == 1 and middle.notes == ("the middle, always",)
    text = files.markdown.read_text()
    assert "| BF / MIDDLE |" in text and "LGA, CMA and MIDDLE ran on the proxy set" in text
    assert "Per-layer scores on zsre: brute force, LGA, CMA, MIDDLE" in text
    shown = runner.invoke(app, ["report", str(folder), "--min-test-requests", "2"])
    header = " ".join(shown.output.split())  # the console wraps a long column header in a narrow terminal
    assert shown.exit_code == 0 and "MIDDLE" in header and header.count("regret") == 3


def test_a_second_study_on_the_same_folder_is_refused_while_one_runs(tmp_path):
    from goldenlayers.files.locks import RunLocked, run_lock

    with run_lock(tmp_path):  # a study already writing this folder
        with pytest.raises(RunLocked, match=str(tmp_path)):
            run_study(_settings(), tmp_path)
    assert not list(tmp_path.glob("*.jsonl"))  # nothing was written


def test_study_command_says_how_to_see_a_small_runs_numbers(local_run, tmp_path):
    """The default report hides data sets below 20 test requests; after a smaller study the CLI
    names the option that shows them, and that option does."""
    import shutil

    from typer.testing import CliRunner

    from goldenlayers.cli import app

    run_dir, run = local_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report*", "figures", "again"))
    result = CliRunner().invoke(app, ["study", *E2E_ARGS, "--out", str(copy)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"{run.planned} were done, 0 done now" in said
    assert f"goldenlayers report {copy} --min-test-requests 2" in said
    result = CliRunner().invoke(app, ["report", str(copy), "--min-test-requests", "2"])
    assert result.exit_code == 0, result.output
    text = (copy / "report.md").read_text()
    assert "Table 1" in text and "not measured" not in text
