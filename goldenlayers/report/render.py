"""Markdown beside PNG files, and one self-contained HTML page (figures inlined as base64)."""

from __future__ import annotations

import base64
import html
import json

from goldenlayers.report.tables import Table
from goldenlayers.study.analysis import StudyResults

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}caption{text-align:left;font-weight:600;margin:.3em 0}.note{color:#555;font-size:.85em}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.6em;overflow:auto}"""


def settings_lines(results: StudyResults) -> list[str]:
    m = results.manifest
    fixed = m["fixed"]
    sizes = ", ".join(f"{d} {results.proxy[d].values.shape[0]} proxy / "
                      f"{results.test[d].values.shape[0]} test" for d in results.datasets)
    layers = ", ".join(f"{d}: {len(results.test[d].layers)}" for d in results.datasets)
    return [f"- model: `{m['model']}` ({m['num_layers']} layers, fingerprint {m['model_fingerprint']})",
            f"- data sets: {', '.join(results.datasets)}; editor: `{results.editor}` "
            f"(editors in the folder: {', '.join(m['editors'])})",
            f"- split: proxy fraction {fixed['proxy_fraction']}, seed {fixed['seed']}; requests "
            f"edited at every layer so far: {sizes}",
            f"- brute-forced layers per data set: {layers}",
            f"- {results.overall_note}",
            f"- failed edits (EditError; left out of the means): {failure_summary(results)}",
            *unmeasured_lines(results)]


def unmeasured_lines(results: StudyResults) -> list[str]:
    if not results.unmeasured:
        return []
    named = ", ".join(f"{d} ({n} test request{'s' if n != 1 else ''} edited at every layer so far)"
                      for d, n in results.unmeasured.items())
    return [f"- not measured (n test < {results.min_test_requests}), so in no table or figure: "
            f"{named}; `goldenlayers report --min-test-requests N` lowers the minimum"]


def failure_summary(results: StudyResults) -> str:
    parts = []
    for split, grids in (("test", results.test), ("proxy", results.proxy)):
        for dataset, grid in grids.items():
            at = [f"{n} at layer {layer}" for layer, n in zip(grid.layers, grid.failures) if n]
            if at:
                total = sum(grid.failures)
                parts.append(f"{dataset} {split}: {total} edit{'s' if total > 1 else ''} failed "
                             f"({', '.join(at)})")
    return "; ".join(parts) or "none"


def markdown_table(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"*{table.note}*"]
    return "\n".join(lines) + "\n"


def markdown(results: StudyResults, tables: list[Table], figures: dict[str, str]) -> str:
    """``figures``: caption -> relative path of the PNG."""
    parts = [f"# Golden layers study: {results.manifest['model']}", "", *settings_lines(results), ""]
    parts += [markdown_table(table) for table in tables]
    parts += [f"### {caption}\n\n![{caption}]({path})\n" for caption, path in figures.items()]
    parts += ["### Settings", "", "```json", json.dumps(results.manifest, indent=2), "```", ""]
    return "\n".join(parts)


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in table.rows)
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return f"<table><caption>{html.escape(table.title)}</caption><tr>{head}</tr>{body}</table>{note}"


def html_page(results: StudyResults, tables: list[Table], figures: dict[str, bytes]) -> str:
    """``figures``: caption -> PNG bytes, inlined so the page stands alone."""
    settings = "".join(f"<li>{html.escape(line[2:]).replace('`', '')}</li>"
                       for line in settings_lines(results))
    images = "".join(
        f"<h3>{html.escape(caption)}</h3><img alt=\"{html.escape(caption)}\" "
        f"src=\"data:image/png;base64,{base64.b64encode(data).decode()}\">"
        for caption, data in figures.items())
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Golden layers study: "
            f"{html.escape(str(results.manifest['model']))}</title><style>{CSS}</style></head><body>"
            f"<h1>Golden layers study: {html.escape(str(results.manifest['model']))}</h1>"
            f"<ul>{settings}</ul>{''.join(html_table(t) for t in tables)}{images}"
            f"<h3>Settings</h3><pre>{html.escape(json.dumps(results.manifest, indent=2))}</pre>"
            "</body></html>")
