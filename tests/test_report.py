"""The analysis behind the report and the report itself, on synthetic result rows whose numbers
are chosen by hand, so every table value can be checked. (The end-to-end study on a tiny model that
also writes a report is in test_study.py.)"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from goldenlayers.engine import CellKey, CellRow, LocateRow, ResultsFolder, build_grids, unit_overall
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import OVERALL
from goldenlayers.locate import LayerScores
from goldenlayers.report import write_report
from goldenlayers.study import StudySettings
from goldenlayers.study.analysis import analyse, load_results
from goldenlayers.study.store import FORMAT, write_manifest

LAYERS = [0, 1, 2, 3]


def _edit(dataset, split, case, layer, **metrics):
    overall = unit_overall(metrics)
    if overall is not None:
        metrics[OVERALL] = overall
    return CellRow(CellKey("tiny-llama", dataset, split, "r-rome", layer, case, 0), metrics,
                   seconds=0.5, edit_seconds=0.2)


READING = "edit-matrix/dataset/raw/sum/k1/argmax"


def _located(dataset, method, scores, excluded, golden, seconds):
    result = LayerScores(method, "tiny-llama", "f00", list(scores), list(excluded), golden, [golden],
                         [list(scores)], seconds, None, {},
                         reading=READING if method == "lga" else None)
    return LocateRow("tiny-llama", dataset, "proxy", method, 0, result.to_dict(), seconds)


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
    """Cell rows and locate rows of two data sets."""
    cells, located = [], []
    for dataset in ("counterfact", "zsre"):
        for split, cases in (("proxy", ["p0", "p1"]), ("test", ["r0", "r1", "r2"])):
            for case in cases:
                for layer in LAYERS:
                    metrics = dict(rewrite_accuracy=_rewrite(dataset, split, case, layer),
                                   locality=1.0 - 0.2 * layer)
                    if dataset == "counterfact":
                        metrics["fluency"] = 5.0 + (layer - 1) ** 2  # higher is better: layer 3
                    cells.append(_edit(dataset, split, case, layer, **metrics))
        if dataset == "counterfact":  # one edit that could not be made
            failed = CellKey("tiny-llama", dataset, "test", "r-rome", 3, "r1", 0)
            cells = [r for r in cells if r.key != failed]
            cells.append(CellRow(failed, {}, 0.1, 0.0, error="tiny denominator"))
        # LGA: layer 3 is an outlier the fence drops, so it picks layer 2; CMA picks layer 0.
        located.append(_located(dataset, "lga", (5.0, 1.0, 9.0, 100.0), (3,), 2, 2.0))
        located.append(_located(dataset, "cma", (0.3, 0.1, 0.0, 0.0), (), 0, 6.0))
    return cells, located


MANIFEST = {"format": FORMAT, "model": "tiny-llama", "model_fingerprint": "f00", "num_layers": 4,
            "fixed": StudySettings("tiny-llama", ("counterfact", "zsre")).fixed(),
            "editors": {"r-rome": {}},
            "datasets": {"counterfact": {"digest": "c", "proxy": 2, "test": 3},
                         "zsre": {"digest": "z", "proxy": 2, "test": 3}}}


def _analyse():
    cells, located = synthetic_records()
    return analyse(None, MANIFEST, build_grids(cells), located)


def test_grid_golden_layers_and_overall():
    grids = build_grids(synthetic_records()[0])
    test = grids[("zsre", "test", "r-rome")]
    assert test.layers == (0, 1, 2, 3) and test.metrics == ("rewrite_accuracy", "locality", OVERALL)
    np.testing.assert_allclose(test.layer_means("rewrite_accuracy"), [0.2, 2.2 / 3, 2.6 / 3, 0.5])
    assert test.golden_layer("rewrite_accuracy") == 2
    assert test.golden_layer("locality") == 0
    # Overall of an edit: the mean of its RwA and LOC; layer 1 balances both best.
    rwa = np.array([0.2, 2.2 / 3, 2.6 / 3, 0.5])
    loc = np.array([1.0, 0.8, 0.6, 0.4])
    np.testing.assert_allclose(test.layer_means(OVERALL), (rwa + loc) / 2)
    assert test.golden_layer(OVERALL) == 1
    assert grids[("zsre", "proxy", "r-rome")].golden_layer("rewrite_accuracy") == 1


def test_analysis_tables_have_the_known_values():
    results = _analyse()
    row = next(r for r in results.table1 if r.dataset == "zsre" and r.metric == "rewrite_accuracy")
    assert row.golden_layer == 2
    assert row.student.mean_a == pytest.approx((1.0 + 0.9 + 0.9) / 3)  # sample-wise optimum
    assert row.student.mean_b == pytest.approx((0.8 + 0.9 + 0.9) / 3)  # golden layer
    assert row.share_at_optimum == pytest.approx(2 / 3)
    assert row.paired.test.n == (3, 3) and row.paired.difference.mean == pytest.approx(0.2 / 3)
    assert row.paired.detectable > 0.2 / 3  # three requests cannot see a difference this small
    proxy = next(r for r in results.proxy_vs_test if r.dataset == "zsre" and r.metric == "rewrite_accuracy")
    assert (proxy.proxy_layer, proxy.test_layer) == (1, 2)
    assert proxy.proxy_score == pytest.approx(2.2 / 3) and proxy.test_score == pytest.approx(2.6 / 3)
    assert proxy.regret.mean == pytest.approx(0.4 / 3) and proxy.regret.n == 3
    # Proxy union: counterfact's proxy prefers 2, zsre's 1; the union mean is best at layer 2.
    assert results.union_layer == 2
    lga = next(a for a in results.agreement if a.dataset == "zsre" and a.method == "lga")
    cma = next(a for a in results.agreement if a.dataset == "zsre" and a.method == "cma")
    assert (lga.layer, lga.regret.mean, lga.rank) == (2, pytest.approx(0.0), 1)
    assert (cma.layer, cma.rank) == (0, 4) and cma.regret.mean == pytest.approx(2.6 / 3 - 0.2)
    assert cma.regret.low <= cma.regret.mean <= cma.regret.high
    assert lga.spearman_test == pytest.approx(0.0)  # ranks (2,1,3,4) vs (1,3,4,2): sum d^2 = 10
    assert cma.spearman_test == pytest.approx(-3 / math.sqrt(4.5 * 5))  # ranks (4,3,1.5,1.5) vs (1,3,4,2)
    table2 = [r for r in results.selection if r.dataset == "zsre"]
    assert [(r.selector, r.layer) for r in table2] == [("LGA", 2), ("CMA", 0), ("BF proxy", 1),
                                                       ("BF test (golden)", 2)]
    # The default reading changed while the campaign ran, so each LGA row says which one it used.
    assert (lga.reading, cma.reading) == (READING, None)
    assert [r.note for r in table2] == [f"reading {READING}", "", "", ""]
    runtime = results.runtimes[0]
    assert runtime.locator_seconds == {"lga": 2.0, "cma": 6.0}
    assert runtime.bf_seconds == pytest.approx(2 * 4 * 0.5)  # 2 proxy requests x 4 layers x 0.5 s
    assert runtime.bf_all_layers_seconds == runtime.bf_seconds  # every layer was brute-forced
    assert "min-max" in results.overall_note
    # LGA's layer 2 against the Overall golden layer 1: (RwA + LOC) / 2 at each
    assert table2[0].regret[OVERALL].mean == pytest.approx((2.2 / 3 + 0.8) / 2 - (2.6 / 3 + 0.6) / 2)
    # The failed edit: counterfact's layer-3 means are over the two edits made, and Table 1 pairs
    # only requests with every edit made.
    counterfact = results.test["counterfact"]
    assert counterfact.failures == (0, 0, 0, 1)
    assert counterfact.layer_means("rewrite_accuracy")[3] == pytest.approx(0.5)
    assert counterfact.golden_layer("fluency") == 3  # higher is better
    row = next(r for r in results.table1 if r.dataset == "counterfact" and r.metric == "rewrite_accuracy")
    assert (row.student.n, row.student.mean_a, row.student.mean_b) == ((2, 2), pytest.approx(0.95),
                                                                       pytest.approx(0.85))
    assert any(r.metric == "fluency" for r in results.table1)  # higher is better, like the others


def _write_synthetic_folder(run_dir, cells, located):
    write_manifest(run_dir, MANIFEST)
    folder = ResultsFolder(run_dir)
    for row in cells:
        folder.add_cell(row)
    for row in located:
        folder.add_locate(row)


def test_a_study_in_flight_is_reported_as_far_as_it_got(tmp_path):
    cells, located = synthetic_records()
    done = [r for r in cells if r.key.case_id != "r2"]
    _write_synthetic_folder(tmp_path, done + [cells[-1]], located)
    results = load_results(tmp_path)
    assert results.test["zsre"].case_ids == ("r0", "r1")  # r2 has no edit yet
    tables = write_report(tmp_path, min_test_requests=2).tables
    assert "n = 2 requests" in " ".join(t.title for t in tables)


def test_a_folder_without_a_manifest_is_named(tmp_path):
    with pytest.raises(GoldenLayersError, match="not a study folder"):
        load_results(tmp_path)
    (tmp_path / "results.sqlite").write_bytes(b"SQLite format 3")
    with pytest.raises(GoldenLayersError, match="goldenlayers 0.1"):
        load_results(tmp_path)


def test_report_writes_every_table_and_figure(tmp_path):
    _write_synthetic_folder(tmp_path, *synthetic_records())
    files = write_report(tmp_path, min_test_requests=3)
    titles = [t.title for t in files.tables]
    for expected in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Figure 2",
                     "Figure 4", "Locators against brute force"):
        assert any(title.startswith(expected) for title in titles), expected
    assert sorted(p.name for p in files.figures) == ["heatmap.png", "layers_counterfact.png",
                                                      "layers_zsre.png", "runtime.png"]
    for path in files.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == 4 and "src=\"figures/" not in page
    text = files.markdown.read_text()
    assert "![" in text and "min-max" in text and "| zsre | LGA | 2 |" in text
    assert "[95% CI]" in text and "detectable (80% power)" in text
    assert "Fluency" in text and "1 edit failed" in text
    assert text.count(f"reading {READING}") == 4  # Table 2 and the locators table, per data set
    assert not math.isnan(files.results.agreement[0].spearman_test)


def test_an_editor_is_compared_with_the_main_one_on_the_layers_both_have():
    from goldenlayers.study.analysis import editor_row

    rome_rewrite = {0: [0.7, 0.7, 0.7], 2: [0.5, 0.6, 0.7]}  # by layer: r0, r1, r2
    rows = [_edit("counterfact", "test", case, layer,
                  rewrite_accuracy=_rewrite("counterfact", "test", case, layer)) for case in
            ("r0", "r1", "r2") for layer in LAYERS]
    rows += [replace(_edit("counterfact", "test", case, layer, rewrite_accuracy=values[i]),
                     key=replace(_edit("counterfact", "test", case, layer).key, editor="rome"))
             for layer, values in rome_rewrite.items() for i, case in enumerate(("r0", "r1", "r2"))]
    grids = build_grids(rows)
    main, rome = grids[("counterfact", "test", "r-rome")], grids[("counterfact", "test", "rome")]
    [comparison] = [c for c in editor_row(rome, main).versus_main if c.metric == "rewrite_accuracy"]
    assert comparison.layers == (0, 2) and comparison.n == 3
    assert (comparison.golden, comparison.main_golden) == (0, 2)
    # ROME at R-ROME's golden layer 2 instead of its own 0 loses 0.2, 0.1, 0.0 on the three requests
    assert comparison.regret_at_main_golden.mean == pytest.approx(0.1)
    # per request, the mean over layers 0 and 2: ROME 0.6, 0.65, 0.7; R-ROME 0.5, 0.55, 0.55
    assert comparison.versus_main.difference.mean == pytest.approx((0.1 + 0.1 + 0.15) / 3)
    assert comparison.versus_main.test.n[0] == 3
    assert editor_row(main, main).versus_main == ()


def _figures(folder) -> list[str]:
    """The figures in a report's folder (not the hidden record of which files we wrote)."""
    return sorted(p.name for p in (folder / "figures").iterdir() if not p.name.startswith("."))


def test_a_data_set_with_too_few_test_requests_is_not_measured(tmp_path, capsys):
    """Below the minimum a data set gets no row and no figure, only its name and its n; a figure
    of an earlier build with it does not stay behind."""
    from goldenlayers.cli import app

    cells, located = synthetic_records()
    _write_synthetic_folder(tmp_path, [r for r in cells if (r.key.dataset, r.key.case_id) != ("zsre", "r2")],
                            located)
    assert (tmp_path / "figures" / "layers_zsre.png").exists() is False
    write_report(tmp_path, min_test_requests=2)
    assert (tmp_path / "figures" / "layers_zsre.png").exists()
    files = write_report(tmp_path, min_test_requests=3)
    assert files.results.datasets == ("counterfact",) and files.results.unmeasured == {"zsre": 2}
    assert not any("zsre" in cell for table in files.tables for row in table.rows for cell in row)
    assert _figures(tmp_path) == ["heatmap.png", "layers_counterfact.png", "runtime.png"]
    text = files.markdown.read_text()
    assert ("not measured (n test < 3), so in no table or figure: zsre (2 test requests edited at "
            "every layer so far)") in text
    assert "| counterfact | LGA | 2 |" in text
    # none has enough: the report names them both and has no table or figure at all
    files = write_report(tmp_path, min_test_requests=4)
    assert files.results.datasets == () and files.tables == () and files.figures == ()
    assert _figures(tmp_path) == []
    assert "counterfact (3 test requests" in files.html.read_text()
    from typer.testing import CliRunner
    result = CliRunner().invoke(app, ["report", str(tmp_path)])  # the default minimum: 20
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith(("│ counterfact", "│ zsre"))]
    assert len(rows) == 2 and all("│ not" in row for row in rows)
