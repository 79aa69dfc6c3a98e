"""The analysis behind the report and the report itself, on a synthetic study store whose numbers
are chosen by hand, so every table value can be checked. (The end-to-end study on a tiny model that
also writes a report is in test_study.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from goldenlayers.errors import GoldenLayersError
from goldenlayers.report import write_report
from goldenlayers.study import EditRecord, EditUnit, LocateRecord, LocateUnit, ResultsStore, StudySettings
from goldenlayers.study.analysis import analyse, load_results
from goldenlayers.study.grids import OVERALL, build_grids

LAYERS = [0, 1, 2, 3]


def _edit(dataset, split, case, layer, **metrics):
    return EditRecord(EditUnit(dataset, split, case, layer, "r-rome"), metrics, seconds=0.5,
                      edit_seconds=0.2)


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
                        metrics["fluency"] = 5.0 - (layer - 1) ** 2  # higher is better: layer 1
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
    assert runtime.bf_seconds == pytest.approx(2 * 4 * 0.5)  # 2 proxy requests x 4 layers x 0.5 s
    assert runtime.bf_all_layers_seconds == runtime.bf_seconds  # every layer was brute-forced
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
    assert any(r.metric == "fluency" for r in results.table1)  # higher is better, like the others


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
    records = synthetic_records()
    _write_synthetic_store(tmp_path, records, planned=len(records))
    files = write_report(tmp_path)
    titles = [t.title for t in files.tables]
    for expected in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Figure 2",
                     "Figure 4", "Locators against brute force", "LGA direction"):
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
