"""The paper's tables and figures, with intervals and tests, from a run folder's result files.

- Per-layer means with bootstrap 95% intervals (over requests), every metric, test and proxy.
- Table 1: golden layer vs each request's own best layer (sample-wise optimum): the paired t-test,
  its n, the interval of the difference and the smallest difference it could detect (80% power);
  Student's test beside it, as in the paper.
- Tables 3-8: the proxy golden layer scored on the test set against the test golden layer, with
  the regret's interval.
- Figure 2: the golden layer of the proxy union on each test set.
- Table 2 / agreement: the test set at the layers of each locator the study runs
  (``locate.study_locators``: LGA, CMA) and of brute force, regret on rewrite accuracy and Overall
  with intervals; a locator that named no layer (CMA with too few known facts) is "not applicable".
- Runtimes, and the golden layer of each editor where several were run.
Needs no model. A study still running is analysed as far as it got (the tables say n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from goldenlayers.engine import (Grid, LocateRow, ResultsFolder, build_grids, pick_index,
                                 signed, union_grid)
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import (OVERALL, Interval, PairedComparison, TTestResult,
                                   higher_is_better, overall_score, paired_comparison,
                                   regret_interval, t_test)
from goldenlayers.locate.base import LayerScores, study_locators
from goldenlayers.study.store import read_manifest

PRIMARY = "rewrite_accuracy"  # the metric of Table 1, the heatmap, regret and rank correlation
REGRET_METRICS = (PRIMARY, OVERALL)


@dataclass(frozen=True)
class GoldenVsSamplewise:
    """Table 1 row: a = each request's best score over the layers, b = the golden layer's score."""

    dataset: str
    metric: str
    golden_layer: int
    student: TTestResult
    paired: PairedComparison
    share_at_optimum: float  # fraction of requests for which the golden layer is (one of) their best


@dataclass(frozen=True)
class ProxyVsTest:
    """Tables 3-8 row: both layers scored on the test set; regret of the proxy layer."""

    dataset: str
    metric: str
    proxy_layer: int
    proxy_score: float
    test_layer: int
    test_score: float
    regret: Interval


@dataclass(frozen=True)
class UnionRow:
    """Figure 2: the proxy-union golden layer on one test set."""

    dataset: str
    union_layer: int
    score_at_union: float
    optimal_layers: tuple[int, ...]
    optimal_score: float


@dataclass(frozen=True)
class SelectionRow:
    """Table 2 row: the test set edited at a selector's layer (None: the selector named none)."""

    dataset: str
    selector: str  # "LGA", "CMA", "BF proxy", "BF test (golden)"
    layer: int | None
    metrics: dict[str, float]
    overall_min_max: float  # the paper's Overall: min-max over this data set's rows
    regret: dict[str, Interval]  # by metric (rewrite accuracy, overall), vs the test golden layer
    note: str = ""


@dataclass(frozen=True)
class Agreement:
    """How well a locator's per-layer scores track brute force, and what its choice costs."""

    dataset: str
    method: str
    layer: int | None
    accuracy: float
    golden_accuracy: float
    regret: Interval | None  # test rewrite accuracy, golden minus the method's layer
    rank: int | None  # 1 = the best test layer
    spearman_test: float  # NaN where either side is constant
    spearman_proxy: float
    notes: tuple[str, ...]
    reading: str | None = None  # the LGA reading the stored run used (the default changed over time)


@dataclass(frozen=True)
class Runtime:
    dataset: str
    locator_seconds: dict[str, float]  # each locator the study ran, by method
    bf_seconds: float  # every cell of the proxy requests
    bf_layers: int
    num_layers: int

    @property
    def bf_all_layers_seconds(self) -> float:
        return self.bf_seconds * self.num_layers / self.bf_layers


@dataclass(frozen=True)
class EditorComparison:
    """One metric of an editor against the study's main editor, on the layers and requests both
    have: whether the main editor's golden layer serves this editor too, and how far apart the
    two editors' layer profiles are."""

    metric: str
    layers: tuple[int, ...]  # brute-forced for both
    n: int  # requests edited by both at every one of those layers
    golden: int  # this editor's golden layer among ``layers``
    main_golden: int  # the main editor's golden layer among ``layers``
    regret_at_main_golden: Interval  # this editor's loss from editing at ``main_golden``
    versus_main: PairedComparison  # per request, the mean over ``layers``: this minus main


@dataclass(frozen=True)
class EditorRow:
    """The golden layer of one editor on one data set's test set, and (for an editor other than
    the main one) its comparison with the main editor."""

    dataset: str
    editor: str
    layers: tuple[int, ...]
    golden: dict[str, int]  # by metric
    score: dict[str, Interval]  # at the golden layer
    versus_main: tuple[EditorComparison, ...] = ()


@dataclass(frozen=True)
class StudyResults:
    run_dir: Path
    manifest: dict[str, object]
    editor: str
    datasets: tuple[str, ...]
    test: dict[str, Grid]
    proxy: dict[str, Grid]
    locators: dict[tuple[str, str], LayerScores]
    layer_means: dict[tuple[str, str], dict[str, list[Interval]]]  # (data set, split) -> metric -> per layer
    table1: list[GoldenVsSamplewise]
    proxy_vs_test: list[ProxyVsTest]
    union_layer: int | None
    union: list[UnionRow]
    selection: list[SelectionRow]
    agreement: list[Agreement]
    runtimes: list[Runtime]
    editors: list[EditorRow]
    overall_note: str
    locate_rows: tuple[LocateRow, ...] = ()  # as stored, e.g. LGA's gradient products
    # data sets left out for having fewer test requests edited at every layer than the minimum
    # (data set -> how many they have): no test-set number is shown for them
    unmeasured: dict[str, int] = field(default_factory=dict)
    min_test_requests: int = 1

    @property
    def num_layers(self) -> int:
        return int(self.manifest["num_layers"])  # type: ignore[arg-type]


def load_results(run_dir: str | Path, editor: str | None = None,
                 min_test_requests: int = 1) -> StudyResults:
    """Everything the report shows, from a run folder (``study.json`` and the result files)."""
    manifest = read_manifest(run_dir)
    folder = ResultsFolder(run_dir)
    return analyse(Path(run_dir), manifest, build_grids(folder.cells()), folder.locate_rows(),
                   editor, min_test_requests)


def analyse(run_dir: Path, manifest: dict, grids: dict[tuple[str, str, str], Grid],
            locate_rows: Sequence[LocateRow], editor: str | None = None,
            min_test_requests: int = 1) -> StudyResults:
    """``min_test_requests``: a data set with fewer test requests edited at every layer is left
    out of every table and figure (listed in ``unmeasured``), so no number rests on a handful."""
    editors = list(manifest["editors"])
    editor = editor or ("r-rome" if "r-rome" in editors else editors[0])
    started = tuple(d for d in manifest["datasets"]
                    if (d, "test", editor) in grids and (d, "proxy", editor) in grids)
    if not started:
        raise GoldenLayersError(f"{run_dir} has no data set with both proxy and test cells of "
                                f"editor {editor!r} yet")
    test_sizes = {d: len(grids[(d, "test", editor)].case_ids) for d in started}
    unmeasured = {d: n for d, n in test_sizes.items() if n < min_test_requests}
    datasets = tuple(d for d in started if d not in unmeasured)
    test = {d: grids[(d, "test", editor)] for d in datasets}
    proxy = {d: grids[(d, "proxy", editor)] for d in datasets}
    methods = study_locators()
    locators = {(row.dataset, row.method): LayerScores.from_dict(row.result)
                for row in locate_rows if row.split == "proxy" and row.method in methods}
    common = sorted(set.intersection(*(set(proxy[d].layers) for d in datasets))) if datasets else []
    union_layer = union_grid([proxy[d] for d in datasets], common).golden_layer(PRIMARY) if common else None
    return StudyResults(
        run_dir, manifest, editor, datasets, test, proxy, locators,
        layer_means={(d, split): {m: [grid.interval(m, layer) for layer in grid.layers]
                                  for m in grid.metrics}
                     for d in datasets for split, grid in (("test", test[d]), ("proxy", proxy[d]))},
        table1=[golden_vs_samplewise(test[d], m) for d in datasets for m in test[d].metrics
                if len(test[d].metric(m, complete=True)) >= 2],
        proxy_vs_test=[proxy_vs_test(proxy[d], test[d], m) for d in datasets
                       for m in test[d].metrics if m in proxy[d].metrics],
        union_layer=union_layer,
        union=[union_row(test[d], union_layer) for d in datasets
               if union_layer is not None and union_layer in test[d].layers],
        selection=[row for d in datasets for row in selection_rows(test[d], proxy[d], locators)],
        agreement=[agreement(test[d], proxy[d], locators[(d, m)]) for d in datasets
                   for m in methods if (d, m) in locators],
        runtimes=[runtime(proxy[d], locators, int(manifest["num_layers"])) for d in datasets
                  if all((d, m) in locators for m in methods)],
        editors=[editor_row(grid, test[d]) for (d, split, _), grid in sorted(grids.items())
                 if split == "test" and d in datasets],
        overall_note=overall_note(),
        locate_rows=tuple(locate_rows),
        unmeasured=unmeasured,
        min_test_requests=min_test_requests,
    )


def golden_vs_samplewise(grid: Grid, metric: str) -> GoldenVsSamplewise:
    matrix = grid.metric(metric, complete=True)  # (R, L): requests with every edit made
    golden = grid.golden_layer(metric)
    _, best = grid.sample_optimal(metric)
    at_golden = matrix[:, grid.column(golden)]
    shortfall = signed(best - at_golden, higher_is_better(metric))  # 0: golden is their best
    return GoldenVsSamplewise(grid.dataset, metric, golden, t_test(best, at_golden),
                              grid.golden_vs_samplewise(metric),
                              float(np.mean(shortfall <= 1e-12)))


def proxy_vs_test(proxy: Grid, test: Grid, metric: str) -> ProxyVsTest:
    proxy_layer, test_layer = proxy.golden_layer(metric), test.golden_layer(metric)
    return ProxyVsTest(test.dataset, metric, proxy_layer, test.score_at(metric, proxy_layer),
                       test_layer, test.score_at(metric, test_layer),
                       test.regret(metric, proxy_layer))


def union_row(test: Grid, union_layer: int) -> UnionRow:
    optimal = test.optimal_layers(PRIMARY)
    return UnionRow(test.dataset, union_layer, test.score_at(PRIMARY, union_layer), optimal,
                    test.score_at(PRIMARY, optimal[0]))


def selection_rows(test: Grid, proxy: Grid, locators: dict) -> list[SelectionRow]:
    """Table 2 for one data set; the paper's Overall is min-max normalised over these rows."""
    chosen: list[tuple[str, int | None, str]] = []
    for method in study_locators():
        scores = locators.get((test.dataset, method))
        if scores is not None:
            layer = scores.golden_layer if scores.golden_layer in test.layers else None
            note = "" if layer is not None else ("; ".join(scores.notes[-1:]) or "no layer")
            note = "; ".join(filter(None, (reading_label(scores.reading), note)))
            chosen.append((method.upper(), layer, note))
    chosen += [("BF proxy", proxy.golden_layer(PRIMARY), ""),
               ("BF test (golden)", test.golden_layer(PRIMARY), "")]
    metrics = [m for m in test.metrics if m != OVERALL]
    placed = [(name, layer, note) for name, layer, note in chosen if layer is not None]
    rows = [{m: test.score_at(m, layer) for m in (*metrics, OVERALL) if m in test.metrics}
            for _, layer, _ in placed]
    paper_overall = overall_score([{m: r[m] for m in metrics} for r in rows], metrics=metrics)
    out = []
    for (name, layer, note), row, score in zip(placed, rows, paper_overall):
        regret = {m: test.regret(m, layer) for m in REGRET_METRICS if m in test.metrics}
        out.append(SelectionRow(test.dataset, name, layer, row, float(score), regret, note))
    out += [SelectionRow(test.dataset, name, None, {}, math.nan, {}, note)
            for name, layer, note in chosen if layer is None]
    return out


def reading_label(reading: str | None) -> str:
    """How a table names the LGA reading a stored run used ("" for other locators)."""
    return f"reading {reading}" if reading else ""


def agreement(test: Grid, proxy: Grid, scores: LayerScores) -> Agreement:
    means = test.layer_means(PRIMARY)
    golden_accuracy = float(np.nanmax(means))
    oriented_scores = signed(scores.scores, scores.higher_is_better)
    layers = [layer for layer in test.layers if layer < len(oriented_scores)]
    spearman_test = spearman(oriented_scores[layers], [test.score_at(PRIMARY, g) for g in layers])
    proxy_layers = [layer for layer in proxy.layers if layer < len(oriented_scores)]
    spearman_proxy = spearman(oriented_scores[proxy_layers],
                              [proxy.score_at(PRIMARY, g) for g in proxy_layers])
    layer = scores.golden_layer
    if layer is None or layer not in test.layers:
        return Agreement(test.dataset, scores.method, layer, math.nan, golden_accuracy, None, None,
                         spearman_test, spearman_proxy, tuple(scores.notes), scores.reading)
    accuracy = test.score_at(PRIMARY, layer)
    rank = 1 + int(np.sum(means > accuracy + 1e-12))
    return Agreement(test.dataset, scores.method, layer, accuracy, golden_accuracy,
                     test.regret(PRIMARY, layer), rank, spearman_test, spearman_proxy,
                     tuple(scores.notes), scores.reading)


def spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0 or not np.all(np.isfinite(a)):
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def runtime(proxy: Grid, locators: dict, num_layers: int) -> Runtime:
    return Runtime(proxy.dataset, {method: locators[(proxy.dataset, method)].seconds
                                   for method in study_locators()},
                   proxy.seconds, len(proxy.layers), num_layers)


def editor_row(grid: Grid, main: Grid | None = None) -> EditorRow:
    golden = {m: grid.golden_layer(m) for m in REGRET_METRICS if m in grid.metrics}
    compared = () if main is None or main.editor == grid.editor else tuple(
        c for m in REGRET_METRICS if m in grid.metrics and m in main.metrics
        for c in [editor_comparison(grid, main, m)] if c is not None)
    return EditorRow(grid.dataset, grid.editor, grid.layers, golden,
                     {m: grid.interval(m, layer) for m, layer in golden.items()}, compared)


def editor_comparison(grid: Grid, main: Grid, metric: str) -> EditorComparison | None:
    """``grid``'s editor against ``main``'s on ``metric`` (None if they share fewer than two
    layers or two requests)."""
    layers = tuple(layer for layer in grid.layers if layer in main.layers)
    cases = [case for case in grid.case_ids if case in main.case_ids]
    if len(layers) < 2 or len(cases) < 2:
        return None

    def matrix(g: Grid) -> np.ndarray:  # (requests, layers) on the shared ones
        rows = [g.case_ids.index(case) for case in cases]
        return g.metric(metric)[np.ix_(rows, [g.column(layer) for layer in layers])]

    this, other = matrix(grid), matrix(main)
    complete = ~(np.isnan(this).any(axis=1) | np.isnan(other).any(axis=1))
    this, other = this[complete], other[complete]
    if len(this) < 2:
        return None
    own = pick_index(this.mean(axis=0), metric)
    main_golden = pick_index(other.mean(axis=0), metric)
    # the editor's own best layer is re-picked in each resample (regret_interval)
    regret = regret_interval(signed(this, higher_is_better(metric)), main_golden)
    return EditorComparison(metric, layers, len(this), layers[own], layers[main_golden], regret,
                            paired_comparison(this.mean(axis=1), other.mean(axis=1)))


def overall_note() -> str:
    return ("Overall (per edit) = the mean of the edit's teacher-forced metrics (rewrite, rephrase, "
            "locality, portability: those the data set has), so layer means, intervals and paired "
            "tests apply to it as to any metric. Table 2 also shows the paper's Overall: the mean "
            "of the metrics min-max normalised over the rows of each data set's table.")
