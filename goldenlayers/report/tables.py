"""The report's tables as plain data (title, columns, rows of text), rendered to Markdown or HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass

from goldenlayers.evaluate import METRICS, OVERALL, Interval, higher_is_better
from goldenlayers.locate.base import study_locators
from goldenlayers.study.analysis import StudyResults, reading_label

LABELS = {"rewrite_accuracy": "RwA", "rephrase_accuracy": "RpA", "locality": "LOC",
          "portability": "PRT", "fluency": "FLC", OVERALL: "OV"}
TITLES = {"rewrite_accuracy": "Rewrite accuracy", "rephrase_accuracy": "Rephrase accuracy",
          "locality": "Locality", "portability": "Portability", "fluency": "Fluency",
          OVERALL: "Overall"}
# docs/findings.md: fewer test requests support no claim, so a data set with fewer edited at every
# layer shows no test-set number (regret, golden layer) until it has them
MIN_TEST_REQUESTS = 20


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def listed(names: list[str] | tuple[str, ...]) -> str:
    """"A", "A and B", "A, B and C"."""
    return " and ".join(filter(None, (", ".join(names[:-1]), *names[-1:])))


def locator_labels() -> tuple[str, ...]:
    """How tables name the locators the study runs (LGA, CMA)."""
    return tuple(method.upper() for method in study_locators())


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.2e}" if p < 1e-3 else f"{p:.4f}")


def fmt_test(test) -> str:
    """A t-test's p, or words where there is nothing to test (every tested value equal)."""
    if test.no_spread:
        equal = test.p_value == 1.0
        return "no test: all values equal" if equal else "no test: no spread, means differ"
    return fmt_p(test.p_value)


def fmt_interval(interval: Interval | None, digits: int = 3) -> str:
    if interval is None or math.isnan(interval.mean):
        return "–"
    return interval.describe(digits)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "–"


def table1(results: StudyResults) -> Table:
    rows = []
    for r in results.table1:
        s, p = r.student, r.paired
        rows.append((r.dataset, LABELS[r.metric], str(r.golden_layer), str(p.test.n[0]),
                     f"{fmt(s.mean_a)} ± {fmt(s.std_a)}", f"{fmt(s.mean_b)} ± {fmt(s.std_b)}",
                     fmt_interval(p.difference), fmt_test(p.test), fmt_test(s),
                     fmt(p.detectable, 3), f"{r.share_at_optimum:.0%}"))
    return Table("Table 1: golden layer vs sample-wise optimal layer (test set)",
                 ("data set", "metric", "golden layer", "n", "sample-wise optimal",
                  "golden layer score", "difference [95% CI]", "p (paired)", "p (Student)",
                  "detectable (80% power)", "requests at their optimum"),
                 tuple(rows), "mean ± sample std over the n test requests with every edit made; "
                 "sample-wise optimal = each request's best score over the brute-forced layers; "
                 "difference = optimal − golden, bootstrap 95% interval over requests; detectable = "
                 "the smallest mean difference the paired t-test finds with 80% power at α = 0.05 "
                 "(a smaller true difference can go unnoticed).")


def proxy_vs_test_tables(results: StudyResults) -> list[Table]:
    """Tables 3-8, one per metric in the paper's order: RwA, RpA, LOC, PRT, FLC, OV."""
    present = {r.metric for r in results.proxy_vs_test}
    tables = []
    for number, metric in enumerate((m for m in (*METRICS, OVERALL) if m in present), start=3):
        rows = tuple((r.dataset, str(r.proxy_layer), fmt(r.proxy_score), str(r.test_layer),
                      fmt(r.test_score), fmt_interval(r.regret), str(r.regret.n))
                     for r in results.proxy_vs_test if r.metric == metric)
        direction = "" if higher_is_better(metric) else " (lower is better)"
        tables.append(Table(f"Table {number}: {TITLES[metric]}{direction} on the test set, "
                            "proxy-selected vs test-selected golden layer",
                            ("data set", "proxy layer", "score", "test golden layer", "score",
                             "regret [95% CI]", "n"),
                            rows, "regret: how much better the test-selected layer scores on the "
                                  "test set, bootstrap 95% interval over the n requests with the "
                                  "best layer re-picked in each resample (so it can exceed 0 when "
                                  "the layers coincide)."))
    return tables


def layer_means_tables(results: StudyResults) -> list[Table]:
    """Per-layer test means of rewrite accuracy and Overall with their intervals."""
    tables = []
    for dataset in results.datasets:
        grid = results.test[dataset]
        metrics = [m for m in ("rewrite_accuracy", OVERALL) if m in grid.metrics]
        means = results.layer_means[(dataset, "test")]
        rows = tuple((str(layer), *(fmt_interval(means[m][j]) for m in metrics))
                     for j, layer in enumerate(grid.layers))
        n = len(grid.case_ids)
        tables.append(Table(f"Per-layer test means on {dataset} (n = {n} requests, editor "
                            f"{results.editor})", ("layer", *(f"{LABELS[m]} [95% CI]" for m in metrics)),
                            rows, "bootstrap 95% intervals over requests (percentile, 2000 "
                                  "resamples, seeded)."))
    return tables


def union_table(results: StudyResults) -> Table:
    rows = tuple((r.dataset, str(r.union_layer), fmt(r.score_at_union),
                  ", ".join(map(str, r.optimal_layers)), fmt(r.optimal_score),
                  fmt(r.optimal_score - r.score_at_union)) for r in results.union)
    return Table("Figure 2 (table): the proxy-union golden layer on each test set (rewrite accuracy)",
                 ("data set", "proxy-union layer", "RwA there", "test-optimal layers", "optimal RwA",
                  "gap"), rows, f"proxy union of {', '.join(results.datasets)}")


def selection_table(results: StudyResults) -> Table:
    metrics = [m for m in METRICS if any(m in r.metrics for r in results.selection)]
    rows = tuple((r.dataset, r.selector, "–" if r.layer is None else str(r.layer),
                  *(fmt(r.metrics.get(m)) for m in metrics), fmt(r.metrics.get(OVERALL)),
                  fmt(r.overall_min_max), fmt_interval(r.regret.get("rewrite_accuracy")),
                  fmt_interval(r.regret.get(OVERALL)), r.note or "")
                 for r in results.selection)
    return Table("Table 2: the test set edited at the layer each method selects",
                 ("data set", "selector", "layer", *(LABELS[m] for m in metrics), "OV",
                  "OV (min-max)", "regret RwA [95% CI]", "regret OV [95% CI]", "note"),
                 rows, f"{listed(locator_labels())} ran on the proxy set; BF proxy / BF test: the brute-force golden "
                 "layer by rewrite accuracy on the proxy / test set (the latter is the oracle). OV: "
                 "the mean per-edit Overall; OV (min-max): the paper's, over the rows of each data "
                 "set. Regret: the test golden layer's mean minus this layer's, bootstrap 95% "
                 "interval over test requests, the best layer re-picked in each resample. A "
                 "selector with no layer is not applicable (note). "
                 "LGA's note names the reading its stored run used: the default when it ran.")


def agreement_table(results: StudyResults) -> Table:
    rows = tuple((a.dataset, a.method.upper(), "–" if a.layer is None else str(a.layer),
                  fmt(a.accuracy), fmt(a.golden_accuracy), fmt_interval(a.regret),
                  "–" if a.rank is None else str(a.rank), fmt(a.spearman_test, 3),
                  fmt(a.spearman_proxy, 3),
                  "; ".join(filter(None, (reading_label(a.reading), *a.notes[-2:]))))
                 for a in results.agreement)
    return Table("Locators against brute force",
                 ("data set", "method", "layer", "test RwA", "golden RwA", "regret [95% CI]", "rank",
                  "Spearman vs test BF", "Spearman vs proxy BF", "notes"), rows,
                 "regret = golden RwA − RwA at the method's layer (bootstrap 95% interval over test "
                 "requests, the best layer re-picked in each resample); rank among the test "
                 "layers; Spearman over the layers, scores oriented so that higher = chosen.")


def editor_table(results: StudyResults) -> Table:
    rows = tuple((r.dataset, r.editor, f"{len(r.layers)}",
                  *(f"{r.golden.get(m, '–')} ({fmt_interval(r.score.get(m))})"
                    for m in ("rewrite_accuracy", OVERALL)))
                 for r in results.editors)
    return Table("Golden layer per editor (test set)",
                 ("data set", "editor", "layers", "golden by RwA (score [95% CI])",
                  "golden by OV (score [95% CI])"), rows,
                 "each editor's own brute-force grid; compare the layers, not across data sets.")


def editor_comparison_table(results: StudyResults) -> Table:
    rows = tuple((r.dataset, r.editor, LABELS[c.metric], f"{len(c.layers)} / {c.n}",
                  f"{c.golden} / {c.main_golden}", fmt_interval(c.regret_at_main_golden),
                  f"{fmt_interval(c.versus_main.difference)}, p {fmt_test(c.versus_main.test)}, "
                  f"detectable {fmt(c.versus_main.detectable, 3)}")
                 for r in results.editors for c in r.versus_main)
    return Table(f"Each editor against {results.editor} (test set, the layers and requests both have)",
                 ("data set", "editor", "metric", "layers / n", f"golden: editor's / {results.editor}'s",
                  f"editor's regret at {results.editor}'s golden [95% CI]",
                  f"editor − {results.editor}, mean over the layers [95% CI], paired p, detectable "
                  "(80% power)"), rows,
                 "Golden layers here are picked among the shared layers only (the editor's re-picked "
                 "in each resample of the regret's interval). The regret says what "
                 f"editing at {results.editor}'s golden layer costs the other editor; the paired "
                 "comparison, whether the two editors' scores differ on average over the layers.")


def runtime_table(results: StudyResults) -> Table:
    methods, labels = study_locators(), locator_labels()
    rows = tuple((r.dataset, *(fmt(r.locator_seconds[m], 1) for m in methods),
                  f"{fmt(r.bf_seconds, 1)} ({r.bf_layers} layers)", fmt(r.bf_all_layers_seconds, 1),
                  *(ratio(r.bf_all_layers_seconds, r.locator_seconds[m]) for m in methods))
                 for r in results.runtimes)
    return Table("Figure 4 (table): wall time on the proxy set, seconds",
                 ("data set", *labels, "brute force", "brute force, all layers",
                  *(f"BF / {label}" for label in labels)), rows,
                 "brute force = the sum of its units (one edit and the data set's metrics each); "
                 "'all layers' scales it to every layer of the model.")


def all_tables(results: StudyResults) -> list[Table]:
    return [table1(results), *proxy_vs_test_tables(results), *layer_means_tables(results),
            union_table(results), selection_table(results), agreement_table(results),
            runtime_table(results), editor_table(results),
            editor_comparison_table(results)]
