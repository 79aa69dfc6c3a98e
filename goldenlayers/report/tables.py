"""The report's tables as plain data (title, columns, rows of text), rendered to Markdown or HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass

from goldenlayers.evaluate import LOWER_IS_BETTER, METRICS
from goldenlayers.study.analysis import StudyResults
from goldenlayers.study.grids import OVERALL

LABELS = {"rewrite_accuracy": "RwA", "rephrase_accuracy": "RpA", "locality": "LOC",
          "portability": "PRT", "fluency": "FLC", OVERALL: "OV"}
TITLES = {"rewrite_accuracy": "Rewrite accuracy", "rephrase_accuracy": "Rephrase accuracy",
          "locality": "Locality", "portability": "Portability", "fluency": "Fluency",
          OVERALL: "Overall"}


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.2e}" if p < 1e-3 else f"{p:.4f}")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "–"


def table1(results: StudyResults) -> Table:
    rows = []
    for r in results.table1:
        s = r.student
        rows.append((r.dataset, LABELS[r.metric], str(r.golden_layer),
                     f"{fmt(s.mean_a)} ± {fmt(s.std_a)}", f"{fmt(s.mean_b)} ± {fmt(s.std_b)}",
                     fmt_p(s.p_value), fmt_p(r.paired.p_value),
                     "yes" if s.significant else "no", f"{r.share_at_optimum:.0%}"))
    return Table("Table 1: golden layer vs sample-wise optimal layer (test set)",
                 ("data set", "metric", "golden layer", "sample-wise optimal", "golden layer score",
                  "p (Student)", "p (paired)", "significant (Student, p<0.05)",
                  "requests at their optimum"),
                 tuple(rows), "mean ± sample std over test requests; sample-wise optimal = each "
                              "request's best score over the brute-forced layers.")


def proxy_vs_test_tables(results: StudyResults) -> list[Table]:
    """Tables 3-8, one per metric in the paper's order: RwA, RpA, LOC, PRT, FLC, OV."""
    present = {r.metric for r in results.proxy_vs_test}
    tables = []
    for number, metric in enumerate((m for m in (*METRICS, OVERALL) if m in present), start=3):
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        rows = tuple((r.dataset, str(r.proxy_layer), fmt(r.proxy_score), str(r.test_layer),
                      fmt(r.test_score), fmt(sign * (r.test_score - r.proxy_score)))
                     for r in results.proxy_vs_test if r.metric == metric)
        lower = " (lower is better)" if sign < 0 else ""
        tables.append(Table(f"Table {number}: {TITLES[metric]}{lower} on the test set, "
                            "proxy-selected vs test-selected golden layer",
                            ("data set", "proxy layer", "score", "test golden layer", "score", "gap"),
                            rows, "gap: how much better the test-selected layer scores on the test "
                                  "set (0 when the layers coincide)."))
    return tables


def union_table(results: StudyResults) -> Table:
    rows = tuple((r.dataset, str(r.union_layer), fmt(r.score_at_union),
                  ", ".join(map(str, r.optimal_layers)), fmt(r.optimal_score),
                  fmt(r.optimal_score - r.score_at_union)) for r in results.union)
    return Table("Figure 2 (table): the proxy-union golden layer on each test set (rewrite accuracy)",
                 ("data set", "proxy-union layer", "RwA there", "test-optimal layers", "optimal RwA",
                  "gap"), rows, f"proxy union of {', '.join(results.datasets)}")


def selection_table(results: StudyResults) -> Table:
    metrics = [m for m in LABELS if m != OVERALL and any(m in r.metrics for r in results.selection)]
    rows = tuple((r.dataset, r.selector, str(r.layer), *(fmt(r.metrics.get(m)) for m in metrics),
                  fmt(r.overall), fmt(r.overall_of_layer)) for r in results.selection)
    return Table("Table 2: the test set edited at the layer each method selects",
                 ("data set", "selector", "layer", *(LABELS[m] for m in metrics), "OV", "OV (all layers)"),
                 rows, "LGA and CMA ran on the proxy set; BF proxy / BF test: the brute-force golden "
                 "layer by rewrite accuracy on the proxy / test set (the latter is the oracle). OV: "
                 "min-max over the rows of each data set (the paper's comparison); OV (all layers): "
                 "min-max over every brute-forced test layer.")


def agreement_table(results: StudyResults) -> Table:
    rows = tuple((a.dataset, a.method.upper(), str(a.layer), fmt(a.accuracy), fmt(a.golden_accuracy),
                  fmt(a.regret), str(a.rank), fmt(a.spearman_test, 3), fmt(a.spearman_proxy, 3))
                 for a in results.agreement)
    return Table("Locators against brute force",
                 ("data set", "method", "layer", "test RwA", "golden RwA", "regret", "rank",
                  "Spearman vs test BF", "Spearman vs proxy BF"), rows,
                 "regret = golden RwA − RwA at the method's layer; rank among the brute-forced test "
                 "layers; Spearman over the study's layers, scores oriented so that higher = chosen.")


def lga_variant_table(results: StudyResults) -> Table:
    rows = tuple((v.dataset, v.direction, "none" if v.fence_k is None else f"{v.fence_k:g}",
                  str(v.layer), fmt(v.accuracy), fmt(v.regret)) for v in results.lga_variants)
    return Table("LGA direction and Tukey fence, from the stored LGA scores",
                 ("data set", "direction", "fence k", "layer", "test RwA", "regret"), rows,
                 "– where that layer was not brute-forced (see --layers).")


def runtime_table(results: StudyResults) -> Table:
    rows = tuple((r.dataset, fmt(r.lga_seconds, 1), fmt(r.cma_seconds, 1),
                  f"{fmt(r.bf_seconds, 1)} ({r.bf_layers} layers)", fmt(r.bf_all_layers_seconds, 1),
                  ratio(r.bf_all_layers_seconds, r.lga_seconds),
                  ratio(r.bf_all_layers_seconds, r.cma_seconds)) for r in results.runtimes)
    return Table("Figure 4 (table): wall time on the proxy set, seconds",
                 ("data set", "LGA", "CMA", "brute force", "brute force, all layers", "BF / LGA",
                  "BF / CMA"), rows,
                 "brute force = the sum of its units (one edit and the data set's metrics each); "
                 "'all layers' scales it to every layer of the model.")


def all_tables(results: StudyResults) -> list[Table]:
    return [table1(results), *proxy_vs_test_tables(results), union_table(results),
            selection_table(results), agreement_table(results), lga_variant_table(results),
            runtime_table(results)]
