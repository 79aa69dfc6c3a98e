"""The command line: a thin layer over the Python API. Each command parses options, calls the API,
and renders the result with rich; the work itself lives in the packages."""

from __future__ import annotations

import logging
import math
import os
import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from goldenlayers.errors import GoldenLayersError

try:  # the click that typer runs on: its own copy in recent versions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

app = typer.Typer(help="Find the golden layer for knowledge editing, edit there, and study it.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="markdown")  # paragraphs reflowed to the terminal
console = Console()
DEBUG_ENV = "GOLDENLAYERS_DEBUG"  # set (to anything but 0): tracebacks instead of one-line errors
DTYPES = ("float32", "bfloat16", "float16")
_flags = {"debug": False}

LAYERS_HELP = ("Layers to brute-force; default all (every layer, so the golden layer is the best "
               "one). Also all:2 (every 2nd), 0-29:3, 4,8,12, or a mix.")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
          debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (for "
                                     f"bug reports; or set {DEBUG_ENV}=1).")) -> None:
    if verbose:
        logging.getLogger("goldenlayers").setLevel(logging.INFO)
    _flags["debug"] = debug


# --- checks of option values, at the command line ------------------------------------------------


def _dtype(value: str) -> str:
    if value not in DTYPES:
        raise typer.BadParameter(f"{value!r} is not supported; use one of {', '.join(DTYPES)}")
    return value


def _fraction(value: float) -> float:
    if not (math.isfinite(value) and 0 < value < 1):
        raise typer.BadParameter(f"must be a number between 0 and 1 (exclusive), got {value}")
    return value


def _check_outputs(overwrite: bool, inputs: list[tuple[str, str | None]],
                   **paths: tuple[str | None, tuple[str, ...]]) -> None:
    """Each output file (option name -> (path, allowed suffixes)) may be written: before the work
    (``files.outputs.check_output_path``: not an input, new or our own unless ``overwrite``)."""
    from goldenlayers.files.outputs import check_output_path

    for option, (path, suffixes) in paths.items():
        if path:
            check_output_path(path, option=f"--{option.replace('_', '-')}", suffixes=suffixes,
                              overwrite=overwrite, inputs=inputs)


def _write_json(path: str, value) -> None:
    from goldenlayers.files.outputs import write_output_json

    write_output_json(path, value)
    console.print(f"wrote {path}")


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
    from goldenlayers.data.formats import MODEL_ANSWER_NOTE

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
    for data in loaded[len(BUNDLED):]:
        console.print(f"{data.origin}: read {len(data) + data.skipped:,} records, "
                      f"{len(data):,} usable, {data.skipped:,} skipped"
                      + ("" if data.skipped else "."), highlight=False, soft_wrap=True)
        for reason in data.skip_reasons:
            console.print(f"  skipped {reason}", highlight=False, soft_wrap=True)
        for what, count in data.notes.items():
            verb = "" if what == MODEL_ANSWER_NOTE else "left out "
            console.print(f"  {verb}{count:,} {what}", highlight=False, soft_wrap=True)


@app.command()
def study(
    out: str = typer.Option(..., "--out", help="Run directory: results store, then the report."),
    model: str = typer.Option("smollm2-135m", "--model", help="Preset, Hugging Face id or folder."),
    data: str = typer.Option("counterfact,zsre", "--data", help="Data sets, comma-separated."),
    editor: str = typer.Option("r-rome", "--editor", help="rome, r-rome, emmet or memit."),
    proxy_fraction: float = typer.Option(0.1, "--proxy-fraction", callback=_fraction,
                                         help="Share of each data set that is proxy (seeded "
                                         "split); the rest is test."),
    test_size: int = typer.Option(6, "--test-size", min=0,
                                  help="Test requests per data set (0: all)."),
    proxy_size: int = typer.Option(3, "--proxy-size", min=0,
                                   help="Proxy requests per data set (0: all)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split and of every unit."),
    layers: str = typer.Option("all", "--layers", help=LAYERS_HELP),
    fluency_size: int = typer.Option(0, "--fluency-size", help="Test requests per data set that "
                                     "also get fluency (seeded; it generates text, so it is slow)."),
    pool_size: int = typer.Option(0, "--pool-size", help="Extra requests per data set, disjoint "
                                  "from the test ones, on which LGA's gradients are also stored."),
    metrics: str = typer.Option(None, "--metrics", help="Metrics, comma-separated, or all; "
                                "default: each data set's teacher-forced ones (no fluency)."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray."),
    workers: int = typer.Option(None, "--workers", min=1, help="Ray actors (default: one per CPU)."),
    batch_requests: int = typer.Option(4, "--batch-requests", min=1, help="Requests whose values "
                                       "are optimised together at one layer, one batch per step "
                                       "(same results; more on a GPU, e.g. 32)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Existing Ray cluster "
                                    "(default: start a local one)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("float32", "--dtype", callback=_dtype,
                              help="float32, bfloat16 or float16."),
    editor_settings: list[str] = typer.Option(None, "--set", help="Editor hyperparameter "
                                              "key=value (repeatable), e.g. v_num_grad_steps=25."),
    profile: str = typer.Option("default", "--profile", help="Hyperparameters: default (ours, faster) or "
                               "easyedit (EasyEdit's published ones for the model family)."),
    hparams: str = typer.Option(None, "--hparams", help="The editor and its settings from an "
                                "EasyEdit or ROME/MEMIT hyperparameter file (its layers set a "
                                "window's size only; checking it loads the model once more)."),
) -> None:
    """Run the paper's experiments (resumable: run it again to finish or to check it is done)."""
    from goldenlayers.app.user_input import check_study_options
    from goldenlayers.study import StudySettings, run_study

    check_study_options(out, data, executor)
    overrides = _editor_keywords(profile, editor_settings)
    if hparams:
        editor, overrides = _study_hparams(hparams, model, dtype, profile, editor_settings)
    settings = StudySettings(model=model, datasets=data, editor=editor, proxy_fraction=proxy_fraction,
                             test_size=test_size or None, proxy_size=proxy_size or None, seed=seed,
                             layers=layers, dtype=dtype, metrics=metrics,
                             fluency_size=fluency_size, pool_size=pool_size,
                             editor_overrides=overrides)
    run = run_study(settings, out, executor=executor, device=device, workers=workers,
                    ray_address=ray_address, requests_per_batch=batch_requests)
    from goldenlayers.report.tables import MIN_TEST_REQUESTS

    few = ""  # the report names a data set below the minimum "not measured"
    if settings.test_size is not None and settings.test_size < MIN_TEST_REQUESTS:
        few = f" --min-test-requests {settings.test_size}"
    console.print(f"{run.planned} cells: {run.done_before} were done, {run.done_now} done now "
                  f"in {run.seconds:.0f} s. Results in {run.run_dir}; next: "
                  f"[bold]goldenlayers report {run.run_dir}{few}[/]"
                  + (f" ({settings.test_size} test requests per data set: numbers to look at, "
                     f"not to claim; {MIN_TEST_REQUESTS} or more are measured)" if few else ""))


def _study_hparams(path: str, model: str, dtype: str, profile: str,
                   settings: list[str] | None) -> tuple[str, dict]:
    """(editor, get_editor's keywords) of a study from an --hparams file, checked on the model
    (loaded on the CPU for it and let go before the study loads its own): --profile fills what
    the file does not say, --set strings win over it."""
    from goldenlayers.app.export import read_hparams_for, settings_for_model
    from goldenlayers.editing import EDITORS
    from goldenlayers.models import load_model

    hparams = read_hparams_for(path)
    given = EDITORS[hparams.editor].config_class.from_overrides(settings or [])  # before the load
    imported = settings_for_model(hparams, load_model(model, dtype=dtype))
    _hparams_notices(path, imported)
    console.print(f"{path}: {imported.editor}; the study edits at every --layers layer, the file's "
                  f"layers {hparams.layers} set the window only", highlight=False)
    return imported.editor, {**_editor_keywords(profile, []), **imported.overrides, **given}


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A study's run directory."),
    out: str = typer.Option(None, "--out", help="Write the report here (default: RUN_DIR)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace report files in --out "
                                   "that goldenlayers did not write."),
    min_test_requests: int = typer.Option(
        None, "--min-test-requests", min=1, show_default=False,
        help="A data set with fewer test requests edited at every layer "
             "shows no test-set numbers ('not measured'). Default: 20, docs/findings.md's rule."),
) -> None:
    """Write a study's tables and figures as report.md and a self-contained report.html; for a
    folder of studies (results/ with one folder per model), one report per study folder."""
    from pathlib import Path

    from goldenlayers.locate import study_locators
    from goldenlayers.report import study_folders, write_report, write_reports
    from goldenlayers.report.tables import MIN_TEST_REQUESTS

    min_test_requests = min_test_requests or MIN_TEST_REQUESTS
    if not (Path(run_dir) / "study.json").exists() and study_folders(run_dir):
        written, waiting = write_reports(run_dir, out or run_dir, min_test_requests, overwrite)
        for files in written:
            console.print(f"Wrote {files.markdown} and {files.html}.")
        for note in waiting:
            console.print(f"waiting: {note}", highlight=False, soft_wrap=True)
        return
    files = write_report(run_dir, out, min_test_requests, overwrite)
    table = Table(title="Golden layers (test rewrite accuracy) and where the locators land")
    methods = study_locators()
    for column in ("data set", "n test", "golden", "proxy golden",
                   *(f"{method.upper()} (regret [95% CI])" for method in methods)):
        table.add_column(column)
    results = files.results
    for dataset in results.datasets:
        found = {a.method: "not applicable" if a.layer is None else
                 f"{a.layer} ({a.regret.describe() if a.regret else 'not brute-forced'})"
                 for a in results.agreement if a.dataset == dataset}
        table.add_row(dataset, str(len(results.test[dataset].case_ids)),
                      str(results.test[dataset].golden_layer("rewrite_accuracy")),
                      str(results.proxy[dataset].golden_layer("rewrite_accuracy")),
                      *(found.get(method, "–") for method in methods))
    for dataset, n in results.unmeasured.items():
        table.add_row(dataset, str(n), f"not measured (n test < {min_test_requests})", "–",
                      *("–" for _ in methods))
    console.print(table)
    console.print(f"Wrote {files.markdown}, {files.html} and {len(files.figures)} figures.")


@app.command()
def locate(
    model: str = typer.Option("smollm2-135m", "--model", help="Preset, Hugging Face id or folder."),
    data: str = typer.Option("counterfact", "--data", help="Bundled data set name or a file path."),
    proxy: int = typer.Option(32, "--proxy", min=1,
                              help="Proxy requests, drawn from the data (seeded)."),
    method: str = typer.Option("staged", "--method", help="A locator: staged (trial edits on "
                               "a sweep of layers, halved; the default), lga, cma, brute-force, "
                               "or another registered one (goldenlayers locators lists them)."),
    budget: int = typer.Option(None, "--budget", min=0, help="staged: trial edits to spend "
                               "(default: 2 per layer of the model; 0: LGA alone)."),
    by: str = typer.Option(None, "--by", help="staged: the trial metric that decides, "
                           "rewrite_accuracy (default) or overall; both are reported."),
    editor: str = typer.Option("r-rome", "--editor", help="Editor of --verify, and of a method "
                               "that edits (brute force)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="How many best layers the result lists."),
    json_out: str = typer.Option(None, "--json", help="Write the result as JSON to this file."),
    plot: str = typer.Option(None, "--plot", help="Write a bar chart of the scores (PNG)."),
    verify: int = typer.Option(0, "--verify", min=0, help="Edit N held-out requests at the "
                               "golden layer and print their metrics."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the proxy draw and of the method."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a --json, --plot or "
                                   "--export file that goldenlayers did not write."),
    layers: str = typer.Option("all", "--layers", help="Layers a method that edits searches: "
                               + LAYERS_HELP),
    profile: str = typer.Option("default", "--profile", help="The hyperparameters of a method "
                                "that edits and of --export: default (ours) or easyedit "
                                "(EasyEdit's)."),
    options: list[str] = typer.Option(None, "--option", "-o", help="A setting of the method, "
                                      "key=value (repeatable), e.g. -o fence_k=1.5 -o combine=sum "
                                      "(none: an optional value left out); goldenlayers locators "
                                      "lists each method's."),
    export: str = typer.Option(None, "--export", help="Write a hyperparameter file for --editor "
                               "at the golden layer: .yaml for EasyEdit (rome, r-rome, emmet, "
                               "memit, alphaedit), .json for the ROME/MEMIT code (rome, memit)."),
    export_format: str = typer.Option(None, "--export-format", help="easyedit or rome (default: "
                                      "by --export's extension)."),
    hparams: str = typer.Option(None, "--hparams", help="A method that edits: the editor and its "
                                "settings from an EasyEdit or ROME/MEMIT hyperparameter file."),
) -> None:
    """Rank the model's layers for editing on a proxy set and name the golden layer.

    By default (--method staged) trial edits of the proxy requests decide: 6 layers spread over
    the depth, halved in rounds by trial rewrite accuracy, within 2 trial edits per layer of the
    model (the rule in docs/findings.md chose these from a replay). --method lga ranks by
    gradients alone; its options left out take the default reading's choice."""

    from goldenlayers.data import load_dataset
    from goldenlayers.app.locate_job import (check_method_uses, options_as_settings, proxy_split,
                                             verify_at_layer)
    from goldenlayers.app.render import (layer_table, metrics_table, plot_layer_scores,
                                         stability_line, trial_lines)
    from goldenlayers.evaluate import bootstrap_interval
    from goldenlayers.locate import get_locator, locator_class
    from goldenlayers.models import load_model
    from goldenlayers.models.tokens import check_fits_context

    given = (("--layers", "layers", layers != "all"),
             ("--profile", "editor_overrides", profile != "default" and not export),
             ("--editor", "editor", editor != "r-rome" and not verify and not export),
             ("--budget", "budget", budget is not None), ("--by", "by", by is not None))
    check_method_uses(method, {flag: name for flag, name, is_set in given if is_set})
    _check_outputs(overwrite, [("--data", data)], json=(json_out, (".json",)),
                   plot=(plot, (".png", ".svg", ".pdf")))
    plan, imported, editor = _locate_hand_over(export, export_format, hparams, editor, method,
                                               verify, profile, overwrite)
    dataset = load_dataset(data)
    shared = dict(top_k=top_k, seed=seed, editor=editor, layers=layers, dataset=dataset.name,
                  **({"budget": budget} if budget is not None else {}),
                  **({"by": by} if by is not None else {}))
    if profile != "default":
        shared["editor_overrides"] = _editor_keywords(profile, [])
    locator = get_locator(method, **options_as_settings(method, shared, options or ()))
    handle = load_model(model, device=device)
    parts = proxy_split(dataset.requests, proxy, seed)
    if verify > 0 and not parts.held_out:
        raise GoldenLayersError("--verify needs held-out requests: the proxy set used them all")
    check_fits_context(handle, parts.proxy + parts.held_out[:verify])
    if imported is not None:  # the file's settings, checked on the loaded model
        shared["editor_overrides"] = _brute_force_hparams(imported, handle, profile)
        locator = get_locator(method, **options_as_settings(method, shared, options or ()))
    scores = locator.locate(handle, parts.proxy)
    console.print(layer_table(scores, f"{method} on {handle.name}, {len(parts.proxy)} "
                                      f"{dataset.name} requests"))
    if scores.golden_layer is None:
        console.print(f"golden layer: [bold red]none[/] ({method} is not applicable here; see the "
                      f"notes); {scores.seconds:.1f} s on {handle.device}")
    else:
        console.print(f"golden layer [bold yellow]{scores.golden_layer}[/]; top {len(scores.top_k)}: "
                      f"{scores.top_k}; {scores.seconds:.1f} s on {handle.device}")
        console.print(f"excluded: {scores.excluded or 'none'}")
    if scores.reading:
        console.print(f"reading: {scores.reading}")
    for line in trial_lines(scores.trials) if scores.trials else []:
        console.print(line, highlight=False)
    if scores.stability:
        console.print(stability_line(scores.stability, len(scores.request_ids)))
    for note in scores.notes:
        console.print(f"note: {note}")
    result = {**scores.to_dict(), "data": dataset.name, "proxy": len(parts.proxy), "seed": seed}
    if locator_class(method).scores_are_means:  # with bootstrap 95% intervals over the requests
        columns = list(zip(*scores.per_request)) if scores.per_request else []
        kept = [layer for layer in range(scores.num_layers) if layer not in scores.excluded]
        result["intervals"] = {str(layer): bootstrap_interval(column).to_dict()
                               for layer, column in zip(kept, columns)}
    if verify > 0:
        held_out = parts.held_out[:verify]
        if scores.golden_layer is None:
            raise GoldenLayersError(f"--verify needs a golden layer, and {method} named none")
        rows = verify_at_layer(handle, held_out, scores.golden_layer, editor)
        console.print(metrics_table(rows, scores.golden_layer, editor))
        names = sorted({name for row in rows for name in row.metrics})
        result["verify"] = {"editor": editor, "layer": scores.golden_layer,
                            "per_request": [row.to_dict() for row in rows],
                            "means": {name: bootstrap_interval(
                                [r.metrics[name] for r in rows if name in r.metrics]).to_dict()
                                for name in names}}
    if plan is not None:
        _export(plan, handle, model, editor, scores, dataset.name, seed, profile,
                locator.settings.editor_overrides if imported is not None else None)
    if json_out:
        _write_json(json_out, result)
    if plot and scores.golden_layer is not None:
        console.print(f"wrote {plot_layer_scores(scores, plot)}")
    elif plot:
        console.print(f"no plot written: {method} has no scores here")


@app.command()
def locators() -> None:
    """List the registered locators, whether a study runs each, and each one's options (the
    settings `goldenlayers locate --method NAME --option key=value` takes) with their defaults."""
    from goldenlayers.app.render import locators_table
    from goldenlayers.locate import LOCATORS

    console.print(locators_table(LOCATORS))


def _locate_hand_over(export, export_format, hparams, editor, method, verify, profile, overwrite):
    """locate's --export plan, --hparams file and editor (the file's, if given), checked before
    any work."""
    from goldenlayers.app.export import plan_export, read_hparams_for
    from goldenlayers.editing.hparams_files import editor_for

    _editor_keywords(profile, [])  # names the profiles if it is not one
    if export_format and not export:
        raise GoldenLayersError("--export-format needs --export FILE")
    if hparams and method != "brute-force":
        raise GoldenLayersError(f"--hparams sets the editor of brute force; {method} edits nothing")
    imported = read_hparams_for(hparams) if hparams else None
    editor = editor_for(imported.algorithm) if imported else editor
    if editor.lower() == "alphaedit" and (method == "brute-force" or verify):
        raise GoldenLayersError("--editor alphaedit is only written (--export): goldenlayers "
                                "runs rome, r-rome, emmet and memit")
    plan = plan_export(export, export_format, editor, overwrite) if export else None
    return plan, imported, editor


def _brute_force_hparams(hparams, handle, profile: str) -> dict:
    """Brute force's editor overrides from an --hparams file (its editor is the file's)."""
    from goldenlayers.app.export import settings_for_model

    imported = settings_for_model(hparams, handle)
    _hparams_notices(hparams.path, imported)
    console.print(f"{hparams.path}: {imported.editor}; brute force tries every --layers layer, "
                  f"the file's layers {hparams.layers} set its window only", highlight=False)
    return {**imported.overrides, **({"profile": profile} if profile != "default" else {})}


def _hparams_notices(path: str, imported) -> None:
    if imported.ignored:
        console.print(f"{path}: ignored (harmless here): {'; '.join(imported.ignored)}",
                      highlight=False, soft_wrap=True)
    for note in imported.notes:
        console.print(f"{path}: {note}", highlight=False, soft_wrap=True)


def _export(plan, handle, model: str, editor: str, scores, dataset: str, seed: int,
            profile: str, overrides: dict | None) -> None:
    from goldenlayers.app.export import provenance_of, write_export

    provenance = provenance_of(scores, dataset=dataset, seed=seed, profile=profile)
    overrides = {k: v for k, v in (overrides or {}).items() if k != "profile"}
    written = write_export(plan, handle, model, editor, scores, provenance, overrides)
    for note in written.notes:
        console.print(f"note: {note}")
    console.print(f"wrote {written.path} ({plan.algorithm}, layers {written.layers})"
                  + (f" and its provenance {written.sidecar}" if written.sidecar else ""))


def _editor_keywords(profile: str, settings: list[str] | None) -> dict[str, str]:
    """``get_editor``'s keywords from --profile and the --set strings (a --set key wins over the
    profile's value: the editor resolves the profile's row for the model, editing/profiles.py)."""
    from goldenlayers.editing.profiles import check_profile
    from goldenlayers.options import parse_assignments

    check_profile(profile)
    return {**({} if profile == "default" else {"profile": profile}),
            **parse_assignments(settings, "--set")}


def parse_layer(text: str, handle, data: str | None = None, editor=None) -> int:
    """The --layer option: a layer number, or ``auto`` for the golden layer of the default locate.

    ``auto`` locates on a bundled data set's proxy set (``--data`` when it names one, else
    CounterFact: golden layers depend on the model more than on the data set) with trial edits by
    ``editor`` (the one the user edits with), and caches the answer per model fingerprint, data
    set and settings, so it costs one staged locate per model and editor.
    """
    from goldenlayers.app.locate_job import DEFAULT_METHOD, layer_scores_cached, trial_editor_settings
    from goldenlayers.data import BUNDLED

    if text.strip().lower() == "auto":
        located_on = data if data in BUNDLED else "counterfact"
        settings = trial_editor_settings(editor) if editor is not None else {}
        scores = layer_scores_cached(handle, located_on, settings)
        layer = scores.golden_layer
        if layer is None:
            raise GoldenLayersError(f"--layer auto: {DEFAULT_METHOD} names no layer for "
                                    f"{handle.name} on {located_on} ({scores.notes[-1]}); give "
                                    f"--layer N")
        spent = f", {scores.trials.edits} trial edits" if scores.trials else ""
        console.print(f"--layer auto: the golden layer of {handle.name} on {located_on} is {layer} "
                      f"({DEFAULT_METHOD} locate{spent})")
        return layer
    return handle.adapter.check_layer(handle.model, _layer_number(text))


def _layer_number(text: str) -> int | None:
    """--layer as a number (None for auto); anything else is refused naming the option."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise GoldenLayersError(f"--layer expects a layer number or 'auto', got {text!r}") from None


def _edit_hparams(hparams: str | None, editor: str | None, layer: str | None):
    """edit's --hparams file, read and checked before the model loads, or None."""
    from goldenlayers.app.export import read_hparams_for

    if not hparams:
        if layer is None:
            raise GoldenLayersError("give --layer N (or auto), or --hparams FILE with the layers")
        return None
    if layer is not None:
        raise GoldenLayersError(f"--layer {layer} and --hparams {hparams}: the file gives the "
                                "layers; give one of them")
    return read_hparams_for(hparams, editor)


def _editor_from_hparams(hparams, handle, overrides: dict):
    """(the editor, the layer) an --hparams file sets on this model, --set and --profile in
    ``overrides`` (the profile under the file, the rest over it)."""
    from goldenlayers.app.export import imported_editor, settings_for_model

    imported = settings_for_model(hparams, handle)
    _hparams_notices(hparams.path, imported)
    rest = {key: value for key, value in overrides.items() if key != "profile"}
    chosen = imported_editor(imported, overrides.get("profile", "default"), rest)
    console.print(f"{hparams.path}: {imported.editor} at layer {imported.layer}", highlight=False)
    return chosen, str(imported.layer)


def _edit_table(session) -> Table:
    table = Table(title=f"{session.result.editor} at layer {session.layer} "
                        f"({', '.join(map(str, session.result.layers))} changed), "
                        f"{session.seconds_per_edit:.1f} s per edit")
    for column in ("case", "prompt", "target", "before", "after", "ok", "rewrite acc."):
        table.add_column(column, overflow="fold")
    for o in session.outcomes:
        acc = o.metrics_after.get("rewrite_accuracy")
        table.add_row(o.case_id, o.prompt, o.target_new, o.answer_before.strip(),
                      o.answer_after.strip(), "[green]yes[/]" if o.success else "[red]no[/]",
                      "" if acc is None else f"{acc:.2f}")
    return table


@app.command()
def edit(
    model: str = typer.Option("smollm2-135m", "--model", help="Preset, Hugging Face id or folder."),
    data: str = typer.Option(None, "--data", help="Bundled data set, benchmark file, or a small "
                             "JSON/JSONL/CSV of prompt, subject, target."),
    n: int = typer.Option(1, "--n", min=0, help="Edit the first N requests of --data (0: all)."),
    layer: str = typer.Option(None, "--layer", help="Layer to edit (MEMIT: the last of its window), "
                              "or auto: the golden layer of the default (staged) locate, with trial "
                              "edits by --editor, located once and cached. Required "
                              "unless --hparams gives it."),
    editor: str = typer.Option(None, "--editor", help="rome, r-rome, emmet or memit (default "
                               "r-rome, or --hparams's)."),
    prompt: str = typer.Option(None, "--prompt", help="Prompt with {} for the subject, or "
                               "containing it."),
    subject: str = typer.Option(None, "--subject", help="The subject in --prompt."),
    target: str = typer.Option(None, "--target", help="The new answer."),
    out: str = typer.Option(None, "--out", help="Save the edited model here (Hugging Face format; "
                            "a new or empty folder, or an earlier goldenlayers output)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Save into an --out folder that holds "
                                   "other files (same-named files are replaced, others kept)."),
    json_out: str = typer.Option(None, "--json", help="Write the results as JSON to this file."),
    patch: str = typer.Option(None, "--patch", help="Save the edit as a patch file (safetensors)."),
    settings: list[str] = typer.Option(None, "--set", help="Hyperparameter, key=value (repeatable)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("float32", "--dtype", callback=_dtype,
                              help="float32, bfloat16 or float16."),
    profile: str = typer.Option("default", "--profile", help="Hyperparameters: default (ours, faster) or "
                               "easyedit (EasyEdit's published ones for the model family)."),
    hparams: str = typer.Option(None, "--hparams", help="The editor, layer(s) and settings from an "
                                "EasyEdit (.yaml) or ROME/MEMIT code (.json) hyperparameter file "
                                "(--profile fills what it does not say; --set wins over it)."),
) -> None:
    """Edit facts at a layer (in sequence; EMMET and MEMIT as one batch) and check them."""
    from goldenlayers.app.edit_session import edit_and_check, save_model
    from goldenlayers.app.user_input import load_requests
    from goldenlayers.editing import get_editor, save_patch
    from goldenlayers.models import load_model
    from goldenlayers.models.tokens import check_fits_context
    from goldenlayers.files.outputs import check_output_folder

    inputs = [("--data", data), ("--model", model)]
    _check_outputs(overwrite, inputs, json=(json_out, (".json",)), patch=(patch, (".safetensors",)))
    if out:
        check_output_folder(out, overwrite=overwrite, inputs=inputs)
    from_file = _edit_hparams(hparams, editor, layer)  # with --layer, or neither: refused
    if layer is not None:
        _layer_number(layer)  # a typo is refused before the model loads
    editor = from_file.editor if from_file else editor or "r-rome"
    requests = load_requests(data, prompt=prompt, subject=subject, target=target, n=n)
    keywords = _editor_keywords(profile, settings)
    chosen = get_editor(editor, **keywords)  # an unknown editor or setting, before the load
    handle = load_model(model, device=device, dtype=dtype)
    check_fits_context(handle, requests)
    if from_file:
        chosen, layer = _editor_from_hparams(from_file, handle, keywords)
    session = edit_and_check(handle, chosen, requests, parse_layer(layer, handle, data, chosen))
    console.print(_edit_table(session))
    console.print(f"{sum(o.success for o in session.outcomes)} of {len(session.outcomes)} greedy "
                  f"answers now start with the new target; metrics before {session.means_before}, "
                  f"after {session.means_after}")
    if out:  # first: --json or --patch inside --out would otherwise make it look foreign
        console.print(f"saved the edited model to {save_model(handle, out, overwrite=overwrite)}")
    if json_out:
        _write_json(json_out, session.to_dict())
    if patch:
        save_patch(session.result, patch, session.original, handle)
        console.print(f"wrote the patch {patch}")


patch_app = typer.Typer(help="Apply an edit patch (goldenlayers edit --patch) to a model, or remove "
                        "it.", no_args_is_help=True)
app.add_typer(patch_app, name="patch")


PATCH_FILE = typer.Argument(..., help="The patch file.")
PATCH_OUT_OVERWRITE = typer.Option(False, "--overwrite", help="Save into an --out folder that "
                                   "holds other files.")
PATCH_DEVICE = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps.")


PATCH_IN_PLACE = typer.Option(False, "--in-place", help="Save the result over the --model folder "
                               "itself (its weights and tokenizer files; other files are kept).")


def _patch_and_model(file: str, model: str, out: str | None, overwrite: bool, device: str,
                     in_place: bool):
    """The patch and the model it goes to, after refusing an output it must not write."""
    from goldenlayers.app.user_input import patch_output
    from goldenlayers.editing import load_patch
    from goldenlayers.models import load_model

    destination = patch_output(file, model, out, in_place, overwrite)
    return load_patch(file), load_model(model, device=device), destination


@patch_app.command("apply")
def patch_apply(
    file: str = PATCH_FILE,
    model: str = typer.Option(..., "--model", help="The model the patch was made for."),
    out: str = typer.Option(None, "--out", help="Save the patched model here (or --in-place)."),
    overwrite: bool = PATCH_OUT_OVERWRITE,
    in_place: bool = PATCH_IN_PLACE,
    device: str = PATCH_DEVICE,
) -> None:
    """Add a patch's weight changes to the weights it was made from (anything else is refused)."""
    from goldenlayers.app.edit_session import save_model
    from goldenlayers.editing import apply_patch

    loaded, handle, out = _patch_and_model(file, model, out, overwrite, device, in_place)
    apply_patch(handle, loaded)
    saved = save_model(handle, out, overwrite=overwrite or in_place)
    console.print(f"applied {loaded.editor} patch ({len(loaded.requests)} requests) to layers "
                  f"{list(loaded.layers)} of {handle.name} and saved the model to {saved}")


@patch_app.command("remove")
def patch_remove(
    file: str = PATCH_FILE,
    model: str = typer.Option(..., "--model", help="A model the patch is applied to."),
    out: str = typer.Option(None, "--out", help="Save the model without the patch here (or "
                            "--in-place)."),
    overwrite: bool = PATCH_OUT_OVERWRITE,
    in_place: bool = PATCH_IN_PLACE,
    device: str = PATCH_DEVICE,
) -> None:
    """Subtract a patch's weight changes, only from patched weights; say how near the original."""
    from goldenlayers.app.edit_session import save_model
    from goldenlayers.editing import remove_patch

    loaded, handle, out = _patch_and_model(file, model, out, overwrite, device, in_place)
    console.print(f"layers {list(loaded.layers)} of {handle.name}: "
                  f"{remove_patch(handle, loaded).describe()}")
    console.print(f"saved the model to {save_model(handle, out, overwrite=overwrite or in_place)}")


def _debugging() -> bool:
    return _flags["debug"] or os.environ.get(DEBUG_ENV, "0") not in ("", "0", "false", "False")


def _one_line(error: BaseException) -> tuple[int, str]:
    """(exit status, message) for an error: 2 for what a user can cause and fix (bad input, a file
    that cannot be read or written), 130 for Ctrl-C, 1 for anything else (a bug)."""
    if isinstance(error, GoldenLayersError):
        return 2, str(error)
    if isinstance(error, OSError):
        where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f)
        return 2, f"{where}: {error.strerror or error}" if where else str(error)
    if isinstance(error, KeyboardInterrupt):
        return 130, "interrupted"
    return 1, (f"unexpected {type(error).__name__}: {error} (a bug: rerun with --debug or "
               f"{DEBUG_ENV}=1 for the traceback, and report it)")


def main(argv: list[str] | None = None) -> None:
    """The ``goldenlayers`` command. Errors end with one line on stderr and exit status 2 (see
    ``_one_line``); ``--debug`` or GOLDENLAYERS_DEBUG=1 shows the traceback instead."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _flags["debug"] = False
    try:
        status = app(args=argv, prog_name="goldenlayers", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as error:
        error.show()  # the help text
        status = error.exit_code
    except click_errors.ClickException as error:  # a bad option value, a missing argument
        hint = f" (see {error.ctx.command_path} --help)" if getattr(error, "ctx", None) else ""
        status = _report(error.exit_code, error.format_message() + hint)
    except typer.Abort:
        status = _report(130, "interrupted")
    except (Exception, KeyboardInterrupt) as error:
        if _debugging():
            raise
        status = _report(*_one_line(error))
    sys.exit(status if isinstance(status, int) else 0)


def _report(status: int, message: str) -> int:
    """One line on stderr, never wrapped: ``error: <message>``."""
    Console(stderr=True).print(Text.assemble(("error: ", "bold red"), " ".join(message.split())),
                               soft_wrap=True)
    return status


if __name__ == "__main__":
    main()
