"""The study: settings, the results store, and end-to-end studies on the tiny model: every table
and figure, resuming after SIGKILL, and the Ray executor against the local one.

(The analysis and report on a synthetic store with hand-chosen numbers: test_report.py.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from goldenlayers.errors import GoldenLayersError
from goldenlayers.report import write_report
from goldenlayers.study import (EditRecord, EditUnit, LocateRecord, LocateUnit, ResultsStore,
                                SettingsMismatch, StudySettings, parse_layers, run_study)


# --- settings -------------------------------------------------------------------------------------

def test_parse_layers_forms():
    assert parse_layers("all", 6) == [0, 1, 2, 3, 4, 5]
    assert parse_layers("all:2", 6) == [0, 2, 4]
    assert parse_layers("1,3-5", 6) == [1, 3, 4, 5]
    assert parse_layers("0-29:3,29", 30) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]
    assert parse_layers("auto", 4) == [0, 1, 2, 3]  # every layer of a small model
    assert parse_layers("auto", 30) == list(range(0, 30, 3))  # about ten of a large one


@pytest.mark.parametrize("spec, message", [("7", "layers 0-5"), ("x", "cannot read"),
                                           ("4-2", "empty range")])
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
    assert StudySettings("m", "zsre, counterfact").datasets == ("zsre", "counterfact")


# --- the store ------------------------------------------------------------------------------------

def _edit(dataset, split, case, layer, **metrics):
    return EditRecord(EditUnit(dataset, split, case, layer, "r-rome"), metrics, seconds=0.5,
                      edit_seconds=0.2)


def test_store_refuses_a_run_directory_with_other_settings(tmp_path):
    settings = StudySettings("tiny-llama", ("counterfact",), seed=0).stored(4, "abc")
    ResultsStore.open(tmp_path, settings).close()
    ResultsStore.open(tmp_path, settings).close()  # the same settings reopen it
    other = StudySettings("tiny-llama", ("counterfact",), seed=1, test_size=3).stored(4, "abc")
    with pytest.raises(SettingsMismatch) as error:
        ResultsStore.open(tmp_path, other)
    assert "seed: 0 there, 1 now" in str(error.value)
    assert "test_size: 6 there, 3 now" in str(error.value)
    assert "proxy_size" not in str(error.value)


def test_store_commits_each_unit_and_keeps_it(tmp_path):
    store = ResultsStore.open(tmp_path, {"model": "m"})
    invocation = store.begin_invocation("local")
    record = _edit("zsre", "test", "case/1", 2, rewrite_accuracy=0.75)
    store.put(record, invocation)
    located = LocateRecord(LocateUnit("zsre", "lga"), (1.0, 3.0, 2.0), (0,), 1, "argmax",
                           {"fence_k": 1.0}, ((1.0, 3.0, 2.0),), seconds=4.0)
    store.put(located, invocation)
    with pytest.raises(sqlite3.IntegrityError):  # a unit is never done twice
        store.put(record, invocation)
    store.close()
    # Another connection sees both units at once: each was committed when it was put.
    assert sqlite3.connect(tmp_path / "results.sqlite").execute(
        "PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = ResultsStore.read(tmp_path)
    assert list(reopened.records()) == [record, located]
    assert reopened.units_done_by(invocation) == 2
    assert reopened.has(record.unit) and not reopened.has(EditUnit("zsre", "test", "case/1", 3, "r-rome"))


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
    store = ResultsStore.read(run_dir)
    try:
        return {key: json.loads(value) for key, value in store.results().items()}
    finally:
        store.close()


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
    files = write_report(run_dir)
    results = files.results
    # 2 data sets x (1 proxy x 4 layers + 2 test x 4 layers) edits + LGA and CMA per data set.
    assert run.planned == 2 * (1 * 4 + 2 * 4) + 4
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
    assert all(r.lga_seconds > 0 and r.cma_seconds > 0 and r.bf_seconds > 0 for r in results.runtimes)
    titles = " ".join(t.title for t in files.tables)
    for expected in ("Table 1", "Table 2", "Table 3", "Figure 2", "Figure 4", "Locators"):
        assert expected in titles
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == len(files.figures) == 4


def test_rerun_does_nothing_and_other_settings_are_refused(local_run):
    run_dir, run = local_run
    before = _results(run_dir)
    again = run_study(_settings(), run_dir)
    assert (again.done_now, again.done_before) == (0, run.planned)
    with pytest.raises(SettingsMismatch, match="seed: 0 there, 1 now"):
        run_study(_settings(seed=1), run_dir)
    assert _results(run_dir) == before


def _count_units(db_path) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0) as db:
            return db.execute("SELECT COUNT(*) FROM units WHERE kind = 'edit'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_killed_study_resumes_to_the_same_results(local_run, tmp_path):
    reference_dir, reference = local_run
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "goldenlayers.cli", "study", *E2E_ARGS, "--out", str(run_dir)]
    process = subprocess.Popen(command, env={**os.environ, "GOLDENLAYERS_PROGRESS": "0"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _count_units(run_dir / "results.sqlite") < 3:
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
    settings = StudySettings("smollm2-135m", ("zsre",), test_size=2, proxy_size=1, layers="4,15")
    run = run_study(settings, tmp_path)
    assert run.done_now == run.planned
    files = write_report(tmp_path)
    results = files.results
    test = results.test["zsre"]
    assert test.score_at("rewrite_accuracy", test.golden_layer("rewrite_accuracy")) >= 0.5
    for method in ("lga", "cma"):
        layer = results.locators[("zsre", method)].golden_layer
        assert 0 <= layer < 30 and layer in test.layers  # the test set was edited there too
    assert f"| zsre | LGA | {results.locators[('zsre', 'lga')].golden_layer} |" in files.markdown.read_text()
