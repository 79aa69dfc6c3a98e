"""The study: settings, the results store, resuming, executors, and the analysis behind the report.

Fast tests use a synthetic store (known numbers, so every table value can be checked); the
end-to-end tests run real studies on the tiny model (see test_study_e2e below).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from goldenlayers.errors import GoldenLayersError
from goldenlayers.study import (EditRecord, EditUnit, LocateRecord, LocateUnit, ResultsStore,
                                SettingsMismatch, StudySettings, parse_layers)
from goldenlayers.study.analysis import analyse, load_results
from goldenlayers.study import run_study
from goldenlayers.study.grids import OVERALL, build_grids

LAYERS = [0, 1, 2, 3]


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


# --- analysis on a synthetic study with known answers ----------------------------------------------

def _rewrite(dataset, split, case, layer):
    """Layer 2 is best on average; request 'r0' peaks at layer 1 instead (sample-wise optimum)."""
    base = {0: 0.2, 1: 0.6, 2: 0.9, 3: 0.5}[layer]
    if case == "r0":
        base = {0: 0.2, 1: 1.0, 2: 0.8, 3: 0.5}[layer]
    if split == "proxy" and dataset == "zsre":
        base = {0: 0.2, 1: 0.95, 2: 0.9, 3: 0.5}[layer]  # the proxy set prefers layer 1
    return base


def synthetic_records():
    records = []
    for dataset in ("counterfact", "zsre"):
        for split, cases in (("proxy", ["p0", "p1"]), ("test", ["r0", "r1", "r2"])):
            for case in cases:
                for layer in LAYERS:
                    metrics = dict(rewrite_accuracy=_rewrite(dataset, split, case, layer),
                                   locality=1.0 - 0.2 * layer)
                    if dataset == "counterfact":
                        metrics["fluency"] = 5.0 + (layer - 1) ** 2  # lower is better: layer 1
                    records.append(_edit(dataset, split, case, layer, **metrics))
        failed = EditUnit(dataset, "test", "r1", 3, "r-rome")
        if dataset == "counterfact":  # one edit that could not be made
            records = [r for r in records if r.unit != failed]
            records.append(EditRecord(failed, {}, 0.1, 0.0, error="tiny denominator"))
        lga = (5.0, 1.0, 9.0, 100.0)  # layer 3 is an outlier the fence drops; LGA picks layer 2
        cma = (0.3, 0.1, 0.0, 0.0)  # CMA picks layer 0
        records.append(LocateRecord(LocateUnit(dataset, "lga"), lga, (3,), 2, "argmax", {},
                                    ((5.0, 1.0, 9.0, 100.0),), seconds=2.0))
        records.append(LocateRecord(LocateUnit(dataset, "cma"), cma, (), 0, "argmax", {},
                                    ((0.3, 0.1, 0.0, 0.0),), seconds=6.0))
    return records


SYNTHETIC_SETTINGS = {**StudySettings("tiny-llama", ("counterfact", "zsre")).stored(4, "f00"),
                      "resolved_layers": LAYERS}


def test_grid_golden_layers_and_overall():
    grids = build_grids(r for r in synthetic_records() if isinstance(r, EditRecord))
    test = grids[("zsre", "test")]
    assert test.layers == (0, 1, 2, 3) and test.metrics == ("rewrite_accuracy", "locality")
    np.testing.assert_allclose(test.layer_means("rewrite_accuracy"), [0.2, 2.2 / 3, 2.6 / 3, 0.5])
    assert test.golden_layer("rewrite_accuracy") == 2
    assert test.golden_layer("locality") == 0
    # Overall: min-max over layers of RwA and LOC, averaged; layer 1 balances both best.
    rwa = (np.array([0.2, 2.2 / 3, 2.6 / 3, 0.5]) - 0.2) / (2.6 / 3 - 0.2)
    loc = np.array([1.0, 2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(test.layer_means(OVERALL), (rwa + loc) / 2)
    assert test.golden_layer(OVERALL) == 1
    assert grids[("zsre", "proxy")].golden_layer("rewrite_accuracy") == 1


def test_analysis_tables_have_the_known_values():
    results = analyse(None, SYNTHETIC_SETTINGS, synthetic_records())
    row = next(r for r in results.table1 if r.dataset == "zsre" and r.metric == "rewrite_accuracy")
    assert row.golden_layer == 2
    assert row.student.mean_a == pytest.approx((1.0 + 0.9 + 0.9) / 3)  # sample-wise optimum
    assert row.student.mean_b == pytest.approx((0.8 + 0.9 + 0.9) / 3)  # golden layer
    assert row.share_at_optimum == pytest.approx(2 / 3)
    proxy = next(r for r in results.proxy_vs_test if r.dataset == "zsre" and r.metric == "rewrite_accuracy")
    assert (proxy.proxy_layer, proxy.test_layer) == (1, 2)
    assert proxy.proxy_score == pytest.approx(2.2 / 3) and proxy.test_score == pytest.approx(2.6 / 3)
    # Proxy union: counterfact's proxy prefers 2, zsre's 1; the union mean is best at layer 2.
    assert results.union_layer == 2
    lga = next(a for a in results.agreement if a.dataset == "zsre" and a.method == "lga")
    cma = next(a for a in results.agreement if a.dataset == "zsre" and a.method == "cma")
    assert (lga.layer, lga.regret, lga.rank) == (2, pytest.approx(0.0), 1)
    assert (cma.layer, cma.rank) == (0, 4) and cma.regret == pytest.approx(2.6 / 3 - 0.2)
    assert lga.spearman_test == pytest.approx(0.0)  # ranks (2,1,3,4) vs (1,3,4,2): sum d^2 = 10
    assert cma.spearman_test == pytest.approx(-3 / math.sqrt(4.5 * 5))  # ranks (4,3,1.5,1.5) vs (1,3,4,2)
    table2 = [r for r in results.selection if r.dataset == "zsre"]
    assert [(r.selector, r.layer) for r in table2] == [("LGA", 2), ("CMA", 0), ("BF proxy", 1),
                                                       ("BF test (golden)", 2)]
    runtime = results.runtimes[0]
    assert (runtime.lga_seconds, runtime.cma_seconds) == (2.0, 6.0)
    assert runtime.bf_seconds == pytest.approx(2 * 4 * 0.5) and runtime.bf_all_layers_seconds == runtime.bf_seconds
    no_fence = next(v for v in results.lga_variants
                    if v.dataset == "zsre" and v.fence_k is None and v.direction == "argmax")
    assert no_fence.layer == 3  # without the fence the outlier layer wins
    assert "min-max" in results.overall_note
    # The failed edit: counterfact's layer-3 means are over the two edits made, and Table 1 pairs
    # only requests with every edit made.
    counterfact = results.test["counterfact"]
    assert counterfact.failures == (0, 0, 0, 1)
    assert counterfact.layer_means("rewrite_accuracy")[3] == pytest.approx(0.5)
    assert counterfact.golden_layer("fluency") == 1
    row = next(r for r in results.table1 if r.dataset == "counterfact" and r.metric == "rewrite_accuracy")
    assert (row.student.n, row.student.mean_a, row.student.mean_b) == ((2, 2), pytest.approx(0.95),
                                                                       pytest.approx(0.85))
    assert not any(r.metric == "fluency" for r in results.table1)  # no sample-wise optimum for FLC


def _write_synthetic_store(run_dir, records, planned):
    store = ResultsStore.open(run_dir, SYNTHETIC_SETTINGS)
    invocation = store.begin_invocation("local")
    store.set_planned(invocation, planned)
    for record in records:
        store.put(record, invocation)
    store.close()


def test_report_refuses_an_unfinished_study(tmp_path):
    records = synthetic_records()
    _write_synthetic_store(tmp_path, records[:5], planned=len(records))
    with pytest.raises(GoldenLayersError, match="unfinished"):
        load_results(tmp_path)


def test_report_writes_every_table_and_figure(tmp_path):
    from goldenlayers.report import write_report

    records = synthetic_records()
    _write_synthetic_store(tmp_path, records, planned=len(records))
    files = write_report(tmp_path)
    titles = [t.title for t in files.tables]
    for expected in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Figure 2", "Figure 4",
                     "Locators against brute force", "LGA direction"):
        assert any(title.startswith(expected) for title in titles), expected
    assert sorted(p.name for p in files.figures) == ["heatmap.png", "layers_counterfact.png",
                                                      "layers_zsre.png", "runtime.png"]
    for path in files.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == 4 and "src=\"figures/" not in page
    text = files.markdown.read_text()
    assert "![" in text and "min-max" in text and "| zsre | LGA | 2 |" in text
    assert "Fluency" in text and "1 edit failed" in text
    assert not math.isnan(files.results.agreement[0].spearman_test)


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
    from goldenlayers.report import write_report

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
