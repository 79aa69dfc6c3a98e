"""The command line: a thin layer over the Python API. Each command parses options, calls the API,
and renders the result with rich; the work itself lives in the packages."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.table import Table

from goldenlayers.errors import GoldenLayersError

app = typer.Typer(help="Find the golden layer for knowledge editing, edit there, and study it.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    if verbose:
        logging.getLogger("goldenlayers").setLevel(logging.INFO)


@app.command()
def models() -> None:
    """List the model presets: layers, parameters and where each comes from."""
    from goldenlayers.models import PRESETS

    table = Table(title="Model presets (any Hugging Face id or local folder also works)")
    for column in ("name", "layers", "parameters", "kind", "source"):
        table.add_column(column)
    for preset in PRESETS.values():
        table.add_row(preset.name, str(preset.layers), preset.parameters, preset.kind, preset.origin)
    console.print(table)


@app.command()
def datasets(
    paths: list[str] = typer.Argument(None, help="Benchmark files to read too (JSON, JSON Lines)."),
    format: str = typer.Option(None, "--format",
                               help="Force the format of PATHS (e.g. zsre-mend, wikicounterfact)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                      help="Skip invalid records of PATHS and say how many."),
) -> None:
    """List the bundled data sets (and any PATHS): records, format, metrics supported, source."""
    from goldenlayers.data import BUNDLED, load_dataset

    loaded = [load_dataset(name) for name in BUNDLED]
    loaded += [load_dataset(path, format=format, skip_invalid=skip_invalid) for path in paths or ()]
    table = Table(title="Data sets (a path reads a full file: goldenlayers datasets FILE)")
    for column in ("name", "records", "format"):
        table.add_column(column, no_wrap=True)
    table.add_column("metrics", no_wrap=True)
    table.add_column("source", overflow="fold")
    for data in loaded:
        records = f"{len(data):,}" + (f" ({data.skipped} skipped)" if data.skipped else "")
        table.add_row(data.name, records, data.format, "\n".join(data.metrics), data.origin)
    console.print(table)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except GoldenLayersError as error:
        console.print(f"[bold red]error:[/] {error}")
        sys.exit(2)


if __name__ == "__main__":
    main()
