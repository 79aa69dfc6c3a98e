"""The paper's tables and figures, computed from a finished study's store (no model needed).

- Table 1: golden layer vs sample-wise optimum on the test set, Student's and the paired t-test.
- Tables 3-8: the proxy golden layer scored on the test set beside the test golden layer, per metric.
- Figure 2: the golden layer of the proxy union against each test set's optimal layers.
- Table 2: the test set at the LGA, CMA, proxy-golden and test-golden layers, all metrics, Overall.
- Agreement: Spearman correlation of LGA's and CMA's layer scores with brute-force accuracy, regret.
- LGA variants: the layer LGA's stored scores give under each direction and fence, and its regret.
- Figure 4: wall time of LGA, CMA and brute force on the proxy set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import LOWER_IS_BETTER, TTestResult, overall_score, t_test
from goldenlayers.locate.fences import excluded_layers, golden_layer
from goldenlayers.study.grids import OVERALL, PRIMARY, Grid, build_grids, union_grid
from goldenlayers.study.settings import LOCATORS
from goldenlayers.study.store import ResultsStore
from goldenlayers.study.units import EditRecord, LocateRecord

FENCES = (None, 1.0, 1.5, 3.0)
DIRECTIONS = ("argmax", "argmin")


@dataclass(frozen=True)
class GoldenVsSamplewise:
    """Table 1 row: a = each request's best layer's score, b = the golden layer's score."""

    dataset: str
    metric: str
    golden_layer: int
    student: TTestResult
    paired: TTestResult
    share_at_optimum: float  # fraction of requests for which the golden layer is (one of) their best


@dataclass(frozen=True)
class ProxyVsTest:
    """Tables 3-8 row: both layers scored on the test set."""

    dataset: str
    metric: str
    proxy_layer: int
    proxy_score: float
    test_layer: int
    test_score: float


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
    """Table 2 row: the test set edited at a selector's layer."""

    dataset: str
    selector: str  # "LGA", "CMA", "BF proxy", "BF test (golden)"
    layer: int
    metrics: dict[str, float]
    overall: float  # min-max over the rows of this data set's table (the paper's comparison)
    overall_of_layer: float  # the layer's Overall among all brute-forced test layers


@dataclass(frozen=True)
class Agreement:
    """How well a locator's per-layer scores track brute force, and what its choice costs."""

    dataset: str
    method: str
    layer: int
    accuracy: float  # test rewrite accuracy at the method's layer
    golden_accuracy: float
    regret: float  # golden_accuracy - accuracy
    rank: int  # 1 = the best test layer
    spearman_test: float  # NaN where either side is constant
    spearman_proxy: float


@dataclass(frozen=True)
class LgaVariant:
    dataset: str
    direction: str
    fence_k: float | None
    layer: int
    accuracy: float
    regret: float


@dataclass(frozen=True)
class Runtime:
    dataset: str
    lga_seconds: float
    cma_seconds: float
    bf_seconds: float  # edits + evaluations of the proxy requests at the study's layers
    bf_layers: int
    num_layers: int

    @property
    def bf_all_layers_seconds(self) -> float:
        return self.bf_seconds * self.num_layers / self.bf_layers


@dataclass(frozen=True)
class StudyResults:
    run_dir: Path
    settings: dict[str, object]
    datasets: tuple[str, ...]
    test: dict[str, Grid]
    proxy: dict[str, Grid]
    locators: dict[tuple[str, str], LocateRecord]
    table1: list[GoldenVsSamplewise]
    proxy_vs_test: list[ProxyVsTest]
    union_layer: int
    union: list[UnionRow]
    selection: list[SelectionRow]
    agreement: list[Agreement]
    lga_variants: list[LgaVariant]
    runtimes: list[Runtime]
    overall_note: str


def load_results(run_dir: str | Path) -> StudyResults:
    """Everything the report shows, from a finished run directory."""
    store = ResultsStore.read(run_dir)
    try:
        settings, records = store.settings() or {}, list(store.records())
        planned = [inv.planned for inv in store.invocations() if inv.planned is not None]
        if not planned or len(records) < planned[-1]:
            raise GoldenLayersError(
                f"the study in {run_dir} is unfinished ({len(records)} of "
                f"{planned[-1] if planned else '?'} units); run the same `goldenlayers study` "
                "command again to finish it")
    finally:
        store.close()
    return analyse(Path(run_dir), settings, records)


def analyse(run_dir: Path, settings: dict, records: list) -> StudyResults:
    grids = build_grids(r for r in records if isinstance(r, EditRecord))
    locators = {(r.unit.dataset, r.unit.method): r for r in records if isinstance(r, LocateRecord)}
    datasets = tuple(settings["datasets"])
    test = {d: grids[(d, "test")] for d in datasets}
    proxy = {d: grids[(d, "proxy")] for d in datasets}
    union_layers = [layer for layer in settings["resolved_layers"]
                    if all(layer in proxy[d].layers for d in datasets)]
    union = union_grid([proxy[d] for d in datasets], union_layers)
    union_layer = union.golden_layer(PRIMARY)
    selection = [row for d in datasets for row in selection_rows(test[d], proxy[d], locators)]
    return StudyResults(
        run_dir, settings, datasets, test, proxy, locators,
        table1=[golden_vs_samplewise(test[d], m) for d in datasets for m in test[d].metrics
                if m not in LOWER_IS_BETTER and len(test[d].metric(m, complete=True)) >= 2],
        proxy_vs_test=[proxy_vs_test(proxy[d], test[d], m) for d in datasets
                       for m in (*test[d].metrics, OVERALL)],
        union_layer=union_layer,
        union=[union_row(test[d], union_layer) for d in datasets],
        selection=selection,
        agreement=[agreement(test[d], proxy[d], locators[(d, m)], settings) for d in datasets
                   for m in LOCATORS],
        lga_variants=[v for d in datasets for v in lga_variants(test[d], locators[(d, "lga")])],
        runtimes=[runtime(proxy[d], locators, settings) for d in datasets],
        overall_note=overall_note(test[datasets[0]]),
    )


def golden_vs_samplewise(grid: Grid, metric: str) -> GoldenVsSamplewise:
    matrix = grid.metric(metric, complete=True)  # (R, L): requests with every edit made
    golden = grid.golden_layer(metric)
    at_golden, best = matrix[:, grid.column(golden)], matrix.max(axis=1)
    return GoldenVsSamplewise(grid.dataset, metric, golden, t_test(best, at_golden),
                              t_test(best, at_golden, paired=True),
                              float(np.mean(at_golden >= best - 1e-12)))


def proxy_vs_test(proxy: Grid, test: Grid, metric: str) -> ProxyVsTest:
    proxy_layer, test_layer = proxy.golden_layer(metric), test.golden_layer(metric)
    return ProxyVsTest(test.dataset, metric, proxy_layer, test.score_at(metric, proxy_layer),
                       test_layer, test.score_at(metric, test_layer))


def union_row(test: Grid, union_layer: int) -> UnionRow:
    optimal = test.optimal_layers(PRIMARY)
    return UnionRow(test.dataset, union_layer, test.score_at(PRIMARY, union_layer), optimal,
                    test.score_at(PRIMARY, optimal[0]))


def selection_rows(test: Grid, proxy: Grid, locators: dict) -> list[SelectionRow]:
    """Table 2 for one data set; Overall min-max normalised over these rows."""
    chosen = [(method.upper(), locators[(test.dataset, method)].golden_layer) for method in LOCATORS]
    chosen += [("BF proxy", proxy.golden_layer(PRIMARY)), ("BF test (golden)", test.golden_layer(PRIMARY))]
    rows = [{m: test.score_at(m, layer) for m in test.metrics} for _, layer in chosen]
    overall = overall_score(rows, metrics=test.metrics)
    return [SelectionRow(test.dataset, name, layer, row, float(score), test.score_at(OVERALL, layer))
            for (name, layer), row, score in zip(chosen, rows, overall)]


def agreement(test: Grid, proxy: Grid, record: LocateRecord, settings: dict) -> Agreement:
    layer = record.golden_layer
    means = test.layer_means(PRIMARY)
    golden_accuracy, accuracy = float(np.nanmax(means)), test.score_at(PRIMARY, layer)
    rank = 1 + int(np.sum(means > accuracy + 1e-12))
    oriented = np.asarray(record.scores) * (-1.0 if record.direction == "argmin" else 1.0)
    grid_layers = [layer for layer in settings["resolved_layers"] if layer in test.layers]
    return Agreement(test.dataset, record.unit.method, layer, accuracy, golden_accuracy,
                     golden_accuracy - accuracy, rank,
                     spearman(oriented[grid_layers], [test.score_at(PRIMARY, g) for g in grid_layers]),
                     spearman(oriented[list(proxy.layers)], proxy.layer_means(PRIMARY)))


def spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0 or not np.all(np.isfinite(a)):
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def lga_variants(test: Grid, record: LocateRecord) -> list[LgaVariant]:
    """The layer LGA's scores give for each direction and fence; scored where it was brute-forced."""
    golden_accuracy = float(np.nanmax(test.layer_means(PRIMARY)))
    variants = []
    for direction in DIRECTIONS:
        for k in FENCES:
            layer = golden_layer(record.scores, excluded_layers(record.scores, k), direction)
            accuracy = test.score_at(PRIMARY, layer) if layer in test.layers else math.nan
            variants.append(LgaVariant(test.dataset, direction, k, layer, accuracy,
                                       golden_accuracy - accuracy))
    return variants


def runtime(proxy: Grid, locators: dict, settings: dict) -> Runtime:
    return Runtime(proxy.dataset, locators[(proxy.dataset, "lga")].seconds,
                   locators[(proxy.dataset, "cma")].seconds, proxy.seconds, len(proxy.layers),
                   int(settings["num_layers"]))


def overall_note(test: Grid) -> str:
    flipped = ", ".join(sorted(LOWER_IS_BETTER))
    return ("Overall (OV) = the mean over a data set's metrics of min-max-normalised values "
            f"(lower-is-better {flipped} negated first, following the paper's FLC with a down "
            "arrow). Per-layer OV (golden layers, Tables 3-8) is normalised over the brute-forced "
            "layers of the split; Table 2's OV over the rows of each data set's table.")
