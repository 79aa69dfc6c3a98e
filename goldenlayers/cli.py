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
    test_size: int = typer.Option(6, "--test-size", help="Test requests per data set (0: all)."),
    proxy_size: int = typer.Option(3, "--proxy-size", help="Proxy requests per data set (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of every unit."),
    layers: str = typer.Option("auto", "--layers", help="Layers to brute-force: auto (all up to "
                               "12 layers, else about 10 evenly spaced), all, all:2, 0-29:3, 4,8,12."),
    metrics: str = typer.Option(None, "--metrics", help="Metrics, comma-separated, or all; "
                                "default: each data set's teacher-forced ones (no fluency)."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray."),
    workers: int = typer.Option(None, "--workers", help="Ray actors (default: one per CPU)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Existing Ray cluster "
                                    "(default: start a local one)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    editor_settings: list[str] = typer.Option(None, "--set", help="Editor hyperparameter "
                                              "key=value (repeatable), e.g. v_num_grad_steps=25."),
    profile: str = typer.Option("default", "--profile", help="Hyperparameters: default (ours, faster) or "
                               "easyedit (EasyEdit's published ones for the model family)."),
) -> None:
    """Run the paper's experiments (resumable: run it again to finish or to check it is done)."""
    from goldenlayers.study import StudySettings, run_study

    settings = StudySettings(model=model, datasets=data, editor=editor, proxy_fraction=proxy_fraction,
                             test_size=test_size or None, proxy_size=proxy_size or None, seed=seed,
                             layers=layers, dtype=dtype, metrics=metrics,
                             editor_overrides=_with_profile(profile, editor_settings))
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


@app.command()
def locate(
    model: str = typer.Option("smollm2-135m", "--model", help="Preset, Hugging Face id or folder."),
    data: str = typer.Option("counterfact", "--data", help="Bundled data set name or a file path."),
    proxy: int = typer.Option(32, "--proxy", help="Proxy requests, drawn from the data (seeded)."),
    method: str = typer.Option("lga", "--method", help="lga, cma or brute-force."),
    editor: str = typer.Option("r-rome", "--editor", help="Editor of brute force and --verify."),
    top_k: int = typer.Option(5, "--top-k", help="How many best layers the result lists."),
    json_out: str = typer.Option(None, "--json", help="Write the result as JSON to this file."),
    plot: str = typer.Option(None, "--plot", help="Write a bar chart of the scores (PNG)."),
    verify: int = typer.Option(0, "--verify", help="Edit N held-out requests at the golden layer "
                               "and print their metrics."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the proxy draw and of causal tracing."),
    fence_k: float = typer.Option(1.0, "--fence-k", help="LGA: Tukey's fence k (< 0: no fences)."),
    direction: str = typer.Option("argmax", "--direction", help="LGA: argmax or argmin."),
    weights: str = typer.Option("edit-matrix", "--weights", help="LGA: edit-matrix or mlp."),
    profile: str = typer.Option("default", "--profile", help="Brute force: the editor's "
                                "hyperparameters, default (ours) or easyedit (EasyEdit's)."),
) -> None:
    """Rank the model's layers for editing on a proxy set and name the golden layer."""
    import json
    from dataclasses import asdict

    from goldenlayers.data import load_dataset
    from goldenlayers.locate import get_locator, locator_settings, proxy_split, verify_at_layer
    from goldenlayers.locate.render import layer_table, metrics_table, plot_layer_scores
    from goldenlayers.models import load_model

    handle = load_model(model, device=device)
    dataset = load_dataset(data)
    parts = proxy_split(dataset.requests, proxy, seed)
    settings = locator_settings(method, top_k=top_k, seed=seed, editor=editor, direction=direction,
                                fence_k=None if fence_k < 0 else fence_k, weights=weights)
    if method == "brute-force" and profile != "default":
        settings["editor_overrides"] = dict(item.split("=", 1) for item in _with_profile(profile, []))
    scores = get_locator(method, **settings).locate(handle, parts.proxy)
    console.print(layer_table(scores, f"{method} on {handle.name}, {len(parts.proxy)} "
                                      f"{dataset.name} requests"))
    console.print(f"golden layer [bold yellow]{scores.golden_layer}[/]; top {len(scores.top_k)}: "
                  f"{scores.top_k}; {scores.seconds:.1f} s on {handle.device}")
    console.print(f"excluded as outliers: {scores.excluded or 'none'}")
    for note in scores.notes:
        console.print(f"note: {note}")
    result = {**scores.to_dict(), "data": dataset.name, "proxy": len(parts.proxy), "seed": seed}
    if verify > 0:
        held_out = parts.held_out[:verify]
        if not held_out:
            raise GoldenLayersError("--verify needs held-out requests: the proxy set used them all")
        rows = verify_at_layer(handle, held_out, scores.golden_layer, editor)
        console.print(metrics_table(rows, scores.golden_layer, editor))
        result["verify"] = {"editor": editor, "layer": scores.golden_layer,
                            "per_request": [asdict(row) for row in rows]}
    if json_out:
        with open(json_out, "w") as file:
            json.dump(result, file, indent=2)
        console.print(f"wrote {json_out}")
    if plot:
        console.print(f"wrote {plot_layer_scores(scores, plot)}")


def _with_profile(profile: str, settings: list[str] | None) -> list[str]:
    """The --set strings after the profile's name (a --set key still wins over the profile's
    value; the editor resolves the profile's values for the model: editing/profiles.py)."""
    from goldenlayers.editing.profiles import PROFILES

    if profile not in PROFILES:
        raise GoldenLayersError(f"unknown --profile {profile!r}; profiles: {', '.join(PROFILES)}")
    return [*([] if profile == "default" else [f"profile={profile}"]), *(settings or ())]


def parse_layer(text: str, handle, data: str | None = None) -> int:
    """The --layer option: a layer number, or ``auto`` for the LGA golden layer.

    ``auto`` locates on a bundled data set's proxy set (``--data`` when it names one, else
    CounterFact: golden layers depend on the model, not the data set) and caches the answer per
    model fingerprint, data set and settings, so it costs one LGA pass per model.
    """
    from goldenlayers.data import BUNDLED
    from goldenlayers.locate.job import golden_layer_cached

    if text.strip().lower() == "auto":
        located_on = data if data in BUNDLED else "counterfact"
        layer = golden_layer_cached(handle, located_on)
        console.print(f"--layer auto: the LGA golden layer of {handle.name} on {located_on} is {layer}")
        return layer
    try:
        layer = int(text)
    except ValueError:
        raise GoldenLayersError(f"--layer expects a layer number or 'auto', got {text!r}") from None
    return handle.adapter.check_layer(handle.model, layer)


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
    n: int = typer.Option(1, "--n", help="Edit the first N requests of --data (0: all)."),
    layer: str = typer.Option(..., "--layer", help="Layer to edit (MEMIT: the last of its window), "
                              "or auto: the LGA golden layer, located once and cached."),
    editor: str = typer.Option("r-rome", "--editor", help="rome, r-rome, emmet or memit."),
    prompt: str = typer.Option(None, "--prompt", help="Prompt with {} for the subject, or "
                               "containing it."),
    subject: str = typer.Option(None, "--subject", help="The subject in --prompt."),
    target: str = typer.Option(None, "--target", help="The new answer."),
    out: str = typer.Option(None, "--out", help="Save the edited model here (Hugging Face format)."),
    json_out: str = typer.Option(None, "--json", help="Write the results as JSON to this file."),
    patch: str = typer.Option(None, "--patch", help="Save the edit as a patch file (safetensors)."),
    settings: list[str] = typer.Option(None, "--set", help="Hyperparameter, key=value (repeatable)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    profile: str = typer.Option("default", "--profile", help="Hyperparameters: default (ours, faster) or "
                               "easyedit (EasyEdit's published ones for the model family)."),
) -> None:
    """Edit facts at a layer (in sequence; EMMET and MEMIT as one batch) and check them."""
    import json

    from goldenlayers.editing import EDITORS, get_editor, save_patch
    from goldenlayers.editing.patches import current_fingerprint
    from goldenlayers.editing.session import edit_and_check, save_model
    from goldenlayers.editing.user_input import load_requests
    from goldenlayers.models import load_model

    requests = load_requests(data, prompt=prompt, subject=subject, target=target, n=n)
    if editor.lower() not in EDITORS:
        raise GoldenLayersError(f"unknown editor {editor!r}; available: {', '.join(sorted(EDITORS))}")
    overrides = EDITORS[editor.lower()].config_class.from_overrides(
        _with_profile(profile, settings))
    chosen = get_editor(editor, **overrides)
    handle = load_model(model, device=device, dtype=dtype)
    session = edit_and_check(handle, chosen, requests, parse_layer(layer, handle, data))
    console.print(_edit_table(session))
    console.print(f"{sum(o.success for o in session.outcomes)} of {len(session.outcomes)} greedy "
                  f"answers now start with the new target; metrics before {session.means_before}, "
                  f"after {session.means_after}")
    if json_out:
        with open(json_out, "w") as file:
            json.dump(session.to_dict(), file, indent=2)
        console.print(f"wrote {json_out}")
    if patch:
        save_patch(session.result, patch, session.original, current_fingerprint(handle),
                   session.weights_fingerprint)
        console.print(f"wrote the patch {patch}")
    if out:
        console.print(f"saved the edited model to {save_model(handle, out)}")


patch_app = typer.Typer(help="Apply an edit patch (goldenlayers edit --patch) to a model, or remove "
                        "it.", no_args_is_help=True)
app.add_typer(patch_app, name="patch")


@patch_app.command("apply")
def patch_apply(
    file: str = typer.Argument(..., help="The patch file."),
    model: str = typer.Option(..., "--model", help="The model the patch was made for."),
    out: str = typer.Option(None, "--out", help="Save the patched model here."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
) -> None:
    """Add a patch's weight changes to the model it was made for (another model is refused)."""
    from goldenlayers.editing import apply_patch, load_patch
    from goldenlayers.editing.session import save_model
    from goldenlayers.models import load_model

    loaded = load_patch(file)
    handle = load_model(model, device=device)
    apply_patch(handle, loaded)
    console.print(f"applied {loaded.editor} patch ({len(loaded.requests)} requests) to layers "
                  f"{list(loaded.layers)} of {handle.name}")
    if out:
        console.print(f"saved the patched model to {save_model(handle, out)}")


@patch_app.command("remove")
def patch_remove(
    file: str = typer.Argument(..., help="The patch file."),
    model: str = typer.Option(..., "--model", help="A model the patch is applied to."),
    out: str = typer.Option(None, "--out", help="Save the model without the patch here."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps."),
) -> None:
    """Subtract a patch's weight changes and say how far the weights are from the original."""
    from goldenlayers.editing import load_patch, remove_patch
    from goldenlayers.editing.session import save_model
    from goldenlayers.models import load_model

    loaded = load_patch(file)
    handle = load_model(model, device=device)
    console.print(f"layers {list(loaded.layers)} of {handle.name}: "
                  f"{remove_patch(handle, loaded).describe()}")
    if out:
        console.print(f"saved the model to {save_model(handle, out)}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except GoldenLayersError as error:
        console.print(f"[bold red]error:[/] {error}")
        sys.exit(2)


if __name__ == "__main__":
    main()
