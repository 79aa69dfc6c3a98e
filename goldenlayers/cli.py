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


@app.command()
def study(
    out: str = typer.Option(..., "--out", help="Run directory: results store, then the report."),
    model: str = typer.Option("smollm2-135m", "--model", help="Preset, Hugging Face id or folder."),
    data: str = typer.Option("counterfact,zsre", "--data", help="Data sets, comma-separated."),
    editor: str = typer.Option("r-rome", "--editor", help="rome, r-rome, emmet or memit."),
    proxy_fraction: float = typer.Option(0.1, "--proxy-fraction", help="Share of each data set "
                                         "that is proxy (seeded split); the rest is test."),
    test_size: int = typer.Option(8, "--test-size", help="Test requests per data set (0: all)."),
    proxy_size: int = typer.Option(4, "--proxy-size", help="Proxy requests per data set (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of every unit."),
    layers: str = typer.Option("all", "--layers", help="Layers to brute-force: all, all:2, "
                               "0-29:3, 4,8,12."),
    metrics: str = typer.Option(None, "--metrics", help="Only these metrics (comma-separated); "
                                "default: all that each data set supports."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray."),
    workers: int = typer.Option(None, "--workers", help="Ray actors (default: one per CPU)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Existing Ray cluster "
                                    "(default: start a local one)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    editor_settings: list[str] = typer.Option(None, "--set", help="Editor hyperparameter "
                                              "key=value (repeatable), e.g. v_num_grad_steps=25."),
) -> None:
    """Run the paper's experiments (resumable: run it again to finish or to check it is done)."""
    from goldenlayers.study import StudySettings, run_study

    settings = StudySettings(model=model, datasets=data, editor=editor, proxy_fraction=proxy_fraction,
                             test_size=test_size or None, proxy_size=proxy_size or None, seed=seed,
                             layers=layers, dtype=dtype, metrics=metrics,
                             editor_overrides=list(editor_settings or ()))
    run = run_study(settings, out, executor=executor, device=device, workers=workers,
                    ray_address=ray_address)
    console.print(f"{run.planned} units: {run.done_before} were done, {run.done_now} done now "
                  f"in {run.seconds:.0f} s. Results in {run.run_dir}; next: "
                  f"[bold]goldenlayers report {run.run_dir}[/]")


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A study's run directory."),
    out: str = typer.Option(None, "--out", help="Write the report here (default: RUN_DIR)."),
) -> None:
    """Write a finished study's tables and figures as report.md and a self-contained report.html."""
    from goldenlayers.report import write_report

    files = write_report(run_dir, out)
    table = Table(title="Golden layers (test rewrite accuracy) and where the locators land")
    for column in ("data set", "golden", "proxy golden", "LGA (regret)", "CMA (regret)"):
        table.add_column(column)
    results = files.results
    for dataset in results.datasets:
        found = {a.method: f"{a.layer} ({a.regret:.3f})" for a in results.agreement if a.dataset == dataset}
        table.add_row(dataset, str(results.test[dataset].golden_layer("rewrite_accuracy")),
                      str(results.proxy[dataset].golden_layer("rewrite_accuracy")),
                      found["lga"], found["cma"])
    console.print(table)
    console.print(f"Wrote {files.markdown}, {files.html} and {len(files.figures)} figures.")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except GoldenLayersError as error:
        console.print(f"[bold red]error:[/] {error}")
        sys.exit(2)


if __name__ == "__main__":
    main()
