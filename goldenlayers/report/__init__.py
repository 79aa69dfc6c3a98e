"""``write_report(run_dir)``: a finished study's tables and figures as Markdown and one HTML page;
``write_reports(root)``: one per study folder of a folder of studies (``results/<model>/``).

Writes ``report.md`` (with ``figures/*.png`` beside it) and ``report.html`` (self-contained) in the
run directory. Needs only the results store, not the model. A data set with fewer than
``min_test_requests`` test requests edited at every layer is named "not measured" and gets no table
row or figure (docs/findings.md: a handful of requests supports no claim).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from goldenlayers.errors import GoldenLayersError
from goldenlayers.files.outputs import file_is_ours, write_output_bytes, write_output_text
from goldenlayers.report import figures as figs
from goldenlayers.report.outputs import (check_report_out, check_rows_match_study, figure_files,
                                         run_folder_is_ours)
from goldenlayers.report.render import html_page, markdown
from goldenlayers.report.tables import MIN_TEST_REQUESTS, Table, all_tables, locator_labels
from goldenlayers.study.analysis import StudyResults, load_results
from goldenlayers.study.store import MANIFEST

__all__ = ["ReportFiles", "Table", "study_folders", "write_report", "write_reports"]


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    figures: tuple[Path, ...]
    tables: tuple[Table, ...]
    results: StudyResults


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def captions(results: StudyResults) -> dict[str, str]:
    """Figure file name -> caption."""
    named = {"heatmap.png": "Test rewrite accuracy per layer and data set (Figure 2)",
             "runtime.png": "Layer search wall time (Figure 4)"}
    for dataset in results.datasets:
        named[f"layers_{slug(dataset)}.png"] = (f"Per-layer scores on {dataset}: "
                                                f"{', '.join(('brute force', *locator_labels()))}")
    return named


def write_report(run_dir: str | Path, out_dir: str | Path | None = None,
                 min_test_requests: int = MIN_TEST_REQUESTS, overwrite: bool = False) -> ReportFiles:
    """Build the report of the study in ``run_dir``; files go to ``out_dir`` (default: ``run_dir``).
    Refused before any work: rows of another model or seed than ``study.json``'s, and a report
    file in ``out_dir`` that goldenlayers did not write (unless ``overwrite``)."""
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    check_report_out(run_dir, out, overwrite)
    check_rows_match_study(run_dir)
    results = load_results(run_dir, min_test_requests=min_test_requests)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    tables, images = [], {}
    if results.datasets:  # none measured: the report names them and shows nothing else
        tables = all_tables(results)
        images = {"heatmap.png": figs.heatmap(results), "runtime.png": figs.runtimes(results)}
        for dataset in results.datasets:
            images[f"layers_{slug(dataset)}.png"] = figs.layer_scores(results, dataset)
    # a figure of an earlier build that this one does not make (say, of a data set now left out)
    # would otherwise stay beside the report as if it belonged to it
    in_run_folder = run_folder_is_ours(run_dir, out)
    for stale in figure_files(out):
        named_ours = stale.name in ("heatmap.png", "runtime.png") or stale.name.startswith("layers_")
        ours = file_is_ours(stale) or (in_run_folder and named_ours)
        if ours and stale.suffix == ".png" and stale.name not in images:
            stale.unlink()
    paths = []
    for name, data in images.items():
        paths.append(write_output_bytes(out / "figures" / name, data))
    named = captions(results)
    md_path, html_path = out / "report.md", out / "report.html"
    write_output_text(md_path, markdown(results, tables, {named[n]: f"figures/{n}" for n in images}))
    write_output_text(html_path, html_page(results, tables,
                                           {named[n]: data for n, data in images.items()}))
    return ReportFiles(md_path, html_path, tuple(paths), tuple(tables), results)


def study_folders(root: str | Path) -> list[Path]:
    """The study folders directly under ``root`` (each with its ``study.json``)."""
    return sorted(p.parent for p in Path(root).glob(f"*/{MANIFEST}"))


def write_reports(root: str | Path, out_dir: str | Path, min_test_requests: int = MIN_TEST_REQUESTS,
                  overwrite: bool = False) -> tuple[list[ReportFiles], list[str]]:
    """A report per study folder under ``root``, each in ``out_dir/<folder name>``; a folder with
    nothing to analyse yet is named in the second list (with why), not an error. Every output
    folder is checked (files goldenlayers did not write are refused) before any is written."""
    folders = study_folders(root)
    for folder in folders:
        check_report_out(folder, Path(out_dir) / folder.name, overwrite)
    written, waiting = [], []
    for folder in folders:
        try:
            written.append(write_report(folder, Path(out_dir) / folder.name, min_test_requests,
                                        overwrite=True))  # checked above
        except GoldenLayersError as error:
            waiting.append(f"{folder.name}: {error}")
    return written, waiting
