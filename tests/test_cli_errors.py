"""Issue 12 from the command line: each bad or unlucky input ends with one line and the right exit
status, and no file outside the output changes. Runs ``cli.main`` in process, on tiny models."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from goldenlayers import cli
from goldenlayers.errors import GoldenLayersError

FAST = ["--set", "v_num_grad_steps=4", "--set", "n_context_templates=2",
        "--set", "context_template_length=5"]
EDIT = ["edit", "--model", "tiny-llama", "--layer", "2", "--prompt", "The mother tongue of {} is",
        "--subject", "Danielle Darrieux", "--target", "English", *FAST]

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``goldenlayers ARGS``."""
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the digest of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, folder: Path, *args: str, match: str) -> str:
    """Run a command that must fail: status 2, one line naming the problem, no file changed."""
    before = tree(folder)
    status, _, err = run(capsys, *args)
    assert status == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # stderr may hold transformers' progress bars before it
    assert last.startswith("error: ") and match in last, err
    assert tree(folder) == before
    return err


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """An edited tiny-llama saved by ``edit --out`` and its patch."""
    folder = tmp_path_factory.mktemp("edited")
    with pytest.raises(SystemExit) as exited:
        cli.main([*EDIT, "--out", str(folder / "model"), "--patch", str(folder / "p.safetensors"),
                  "--json", str(folder / "e.json")])
    assert exited.value.code == 0
    return folder


# --- silent wrong results ---------------------------------------------------------------------------


def test_a_patch_is_applied_once_and_removed_only_when_applied(edited, tmp_path, capsys):
    patch, model, other = str(edited / "p.safetensors"), str(edited / "model"), str(tmp_path / "o")
    refused(capsys, edited, "patch", "apply", patch, "--model", model, "--out", other,
            match="already applied")
    refused(capsys, edited, "patch", "remove", patch, "--model", "tiny-llama", "--out", other,
            match="it is not applied to 'tiny-llama'")
    refused(capsys, edited, "patch", "apply", patch, "--model", "tiny-gpt2", "--out", other,
            match="made for model 'tiny-llama' (llama architecture), not for 'tiny-gpt2'")
    status, out, err = run(capsys, "patch", "apply", patch, "--model", "tiny-llama",
                           "--out", str(tmp_path / "patched"))
    assert status == 0 and "saved the model to" in " ".join(out.split()), err
    refused(capsys, tmp_path, "patch", "apply", patch, "--model", str(tmp_path / "patched"),
            "--in-place", match="already applied")
    status, out, err = run(capsys, "patch", "remove", patch, "--model", str(tmp_path / "patched"),
                           "--in-place")
    assert status == 0 and "removed" in out, err
    status, out, err = run(capsys, "patch", "apply", patch, "--model", str(tmp_path / "patched"),
                           "--in-place")  # removed and saved in place: it applies again
    assert status == 0, err


def test_patch_commands_save_somewhere_or_refuse(edited, tmp_path, capsys):
    patch, model = str(edited / "p.safetensors"), str(edited / "model")
    for command in ("apply", "remove"):
        refused(capsys, edited, "patch", command, patch, "--model", "tiny-llama",
                match="nothing would be saved: give --out FOLDER")
    refused(capsys, edited, "patch", "remove", patch, "--model", model, "--out", model,
            match="is the --model folder; pass --in-place")
    refused(capsys, edited, "patch", "apply", patch, "--model", "tiny-llama", "--in-place",
            match="'tiny-llama' is not a local folder")


def test_a_patch_changed_after_it_was_written_is_refused(edited, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(edited / "p.safetensors"), framework="pt") as f:
        metadata, tensors = f.metadata(), {name: f.get_tensor(name) for name in f.keys()}
    left = next(name for name in tensors if name.endswith(".left"))
    tensors[left] = tensors[left] * 1.5
    save_file(tensors, str(tmp_path / "altered.safetensors"), metadata=metadata)
    refused(capsys, tmp_path, "patch", "apply", str(tmp_path / "altered.safetensors"), "--model",
            "tiny-llama", "--out", str(tmp_path / "patched"),
            match="do not match the patched weights it records")
    assert not (tmp_path / "patched").exists()


@pytest.mark.parametrize("args, match", [
    (["edit", "--n", "-1"], "Invalid value for '--n'"),
    (["locate", "--proxy", "0"], "Invalid value for '--proxy'"),
    (["locate", "--top-k", "-2"], "Invalid value for '--top-k'"),
    (["locate", "--verify", "-1"], "Invalid value for '--verify'"),
    (["locate", "--method", "lga", "--option", "fence_k=nan"], "option fence_k expects float or none, not 'nan'"),
    (["locate", "--method", "lga", "-o", "fence_k=inf"], "option fence_k expects float or none, not 'inf'"),
    (["locate", "--method", "lga", "-o", "noise=2"], "unknown LGASettings setting 'noise'; valid: fence_k"),
    (["edit", "--dtype", "int8"], "'int8' is not supported; use one of float32, bfloat16, float16"),
    (["study", "--out", "x", "--dtype", "int8"], "use one of float32, bfloat16, float16"),
    (["study", "--out", "x", "--test-size", "-1"], "Invalid value for '--test-size'"),
    (["study", "--out", "x", "--proxy-size", "-3"], "Invalid value for '--proxy-size'"),
    (["study", "--out", "x", "--workers", "0"], "Invalid value for '--workers'"),
    (["study", "--out", "x", "--proxy-fraction", "1.5"], "between 0 and 1"),
    (["study", "--out", "x", "--proxy-fraction", "nan"], "between 0 and 1"),
])
def test_bad_counts_and_values_are_refused_at_the_command_line(tmp_path, capsys, args, match,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = args[0]
    extra = {"edit": ["--model", "tiny-llama", "--layer", "1", "--prompt", "{} is", "--subject",
                      "Paris", "--target", "big"],
             "locate": ["--model", "tiny-llama"], "study": ["--model", "tiny-llama"]}[command]
    refused(capsys, tmp_path, *args, *extra, match=match)


def test_duplicate_case_ids_are_named(tmp_path, capsys):
    record = {"prompt": "The capital of France is", "subject": "France", "target": "Rome"}
    (tmp_path / "r.json").write_text(json.dumps([{**record, "case_id": "x"}, {**record, "case_id": "x"}]))
    refused(capsys, tmp_path, *EDIT[:5], "--data", str(tmp_path / "r.json"),
            match="case ids must be unique; repeated: 'x'")


# --- lost data --------------------------------------------------------------------------------------


def test_edit_out_never_touches_a_folder_of_someone_else(tmp_path, capsys):
    theirs = tmp_path / "their-model"
    theirs.mkdir()
    (theirs / "model-00001-of-00002.safetensors").write_bytes(b"their shard")
    (theirs / "config.json").write_text("{}")
    refused(capsys, tmp_path, *EDIT, "--out", str(theirs),
            match="holds files goldenlayers did not write (config.json, model-00001-of-00002")
    status, _, err = run(capsys, *EDIT, "--out", str(theirs), "--overwrite")
    assert status == 0, err
    assert (theirs / "model-00001-of-00002.safetensors").read_bytes() == b"their shard"
    status, _, err = run(capsys, *EDIT, "--out", str(theirs))  # now our own output too
    assert status == 0, err


def test_edit_our_own_output_again_replaces_it(edited, capsys):
    before = tree(edited / "model")
    status, _, err = run(capsys, *EDIT, "--out", str(edited / "model"))
    assert status == 0, err
    assert set(tree(edited / "model")) == set(before)


def test_results_saved_inside_the_new_model_folder(tmp_path, capsys):
    out = tmp_path / "model"
    status, _, err = run(capsys, *EDIT, "--out", str(out), "--json", str(out / "e.json"))
    assert status == 0, err
    assert (out / "e.json").is_file() and (out / "config.json").is_file()


@pytest.mark.parametrize("option, name, match", [
    ("--json", "afile/out.json", "afile is a file, not a folder"),
    ("--json", "out.txt", "expected a file ending in .json"),
    ("--patch", "p.txt", "expected a file ending in .safetensors"),
    ("--patch", "adir", "is a folder"),
    ("--out", "afile", "is a file, not a folder"),
])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys, option, name, match):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    refused(capsys, tmp_path, *EDIT, option, str(tmp_path / name), match=match)


@pytest.mark.parametrize("option, name, match", [
    ("--plot", "layers.txt", "expected a file ending in .png"),
    ("--json", "afile/out.json", "is a file, not a folder"),
])
def test_locate_outputs_are_checked_before_locating(tmp_path, capsys, option, name, match):
    (tmp_path / "afile").write_text("x")
    refused(capsys, tmp_path, "locate", "--model", "tiny-llama", "--proxy", "2", option,
            str(tmp_path / name), match=match)


# --- hang, caches, formats -------------------------------------------------------------------------


def test_a_huge_prompt_is_refused_naming_the_record_and_its_tokens(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prompt = "Paris " * 900_000 + "is"  # 5.4 MB
    err = refused(capsys, tmp_path, "edit", "--model", "tiny-llama", "--layer", "1", "--prompt",
                  prompt, "--subject", "Paris", "--target", "big", match="request 1: the prompt")
    assert "tokens" in err and "512-token context of tiny-llama" in err


def test_datasets_reads_an_export_and_says_what_it_skipped(tmp_path, capsys):
    base = {"prompt": "The mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux",
            "target_new": "English", "ground_truth": "French",
            "rephrase_prompt": ["Danielle Darrieux speaks", "Darrieux speaks"],
            "locality": [{"prompt": "Michel Rocard speaks", "ground_truth": "French"}]}
    records = [base, {**base, "subject": "Nobody"}]
    (tmp_path / "export.json").write_text(json.dumps({"records": records}))
    status, out, err = run(capsys, "datasets", str(tmp_path / "export.json"), "--skip-invalid")
    assert status == 0, err
    assert "read 2 records, 1 usable, 1 skipped" in " ".join(out.split())
    assert "record 1, field 'subject'" in out
    refused(capsys, tmp_path, "datasets", str(tmp_path / "export.json"),
            match="record 1, field 'subject'")
    (tmp_path / "garbage.json").write_bytes(b"\x00\x01garbage")
    refused(capsys, tmp_path, "datasets", str(tmp_path / "garbage.json"), match="garbage.json")


# --- tracebacks only on request ----------------------------------------------------------------------


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    bad = ["edit", "--model", "no-such-model", "--layer", "1", "--prompt", "{} is",
           "--subject", "Paris", "--target", "big"]
    refused(capsys, tmp_path, *bad, match="'no-such-model' is neither a preset")
    with pytest.raises(GoldenLayersError, match="neither a preset"):
        cli.main(["--debug", *bad])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(GoldenLayersError):
        cli.main(bad)


def test_a_bug_is_one_line_with_status_1(tmp_path, capsys, monkeypatch):
    import goldenlayers.models

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(goldenlayers.models, "load_model", broken)
    status, _, err = run(capsys, "patch", "apply", "x.safetensors", "--model", "tiny-llama",
                         "--out", str(tmp_path / "o"))
    assert status == 2 and "x.safetensors" in err  # the patch is read first: a user error
    status, _, err = run(capsys, "locate", "--model", "tiny-llama", "--proxy", "2")
    last = err.strip().splitlines()[-1]
    assert status == 1 and "Traceback" not in err
    assert "unexpected ZeroDivisionError: oops" in last and "--debug" in last


@pytest.mark.parametrize("args, match", [
    (["--device", "foo"], "unknown device 'foo'; use cpu, cuda, cuda:N or mps"),
    (["--device", "cuda:7"], "device 'cuda:7' is not available"),
    (["--model", "{folder}"], "is a folder but not a saved model (no config.json in it)"),
])
def test_devices_and_model_folders_that_do_not_exist_here(tmp_path, capsys, args, match):
    args = [a.replace("{folder}", str(tmp_path)) for a in args]
    refused(capsys, tmp_path, *EDIT, *args, match=match)


@pytest.mark.parametrize("name, content, match", [
    ("study.json", "{not json", "is not a study manifest"),
    ("results.sqlite", "garbage", "goldenlayers 0.1"),
])
def test_report_on_a_damaged_run_folder_names_the_file(tmp_path, capsys, name, content, match):
    (tmp_path / name).write_text(content)
    refused(capsys, tmp_path, "report", str(tmp_path), match=match)


def test_report_on_a_garbage_results_file_names_the_file_and_line(tmp_path, capsys):
    from goldenlayers.study.store import FORMAT, write_manifest

    write_manifest(tmp_path, {"format": FORMAT, "model": "m", "model_fingerprint": "f",
                              "num_layers": 4, "fixed": {}, "editors": {"r-rome": {}},
                              "datasets": {"zsre": {"digest": "d", "proxy": 1, "test": 1}}})
    (tmp_path / "zsre.jsonl").write_text("garbage\n{}\n")
    refused(capsys, tmp_path, "report", str(tmp_path), match="zsre.jsonl: line 1")


# --- issue 30: one rule for every output ------------------------------------------------------------


def _run_folder(folder: Path, model: str = "m", seed: int = 0) -> Path:
    from goldenlayers.study.store import FORMAT, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, {"format": FORMAT, "model": model, "model_fingerprint": "f",
                            "num_layers": 4, "fixed": {"seed": seed}, "editors": {"r-rome": {}},
                            "datasets": {"zsre": {"digest": "d", "proxy": 1, "test": 1}}})
    return folder


def test_a_single_file_output_replaces_only_our_own(edited, tmp_path, capsys):
    theirs = tmp_path / "results.json"
    theirs.write_text('{"mine": true}')
    refused(capsys, tmp_path, *EDIT, "--json", str(theirs),
            match="the file exists and goldenlayers did not write it")
    status, _, err = run(capsys, *EDIT, "--json", str(theirs), "--overwrite")
    assert status == 0, err
    ours = json.loads(theirs.read_text())
    assert ours["editor"] == "r-rome"
    status, _, err = run(capsys, *EDIT, "--json", str(theirs))  # now our own: replaced
    assert status == 0, err
    theirs.write_text('{"edited by hand": true}')  # changed since: the user's again
    refused(capsys, tmp_path, *EDIT, "--json", str(theirs), match="or it was changed since")


def test_an_output_that_is_also_an_input_is_refused(tmp_path, capsys):
    data = tmp_path / "mine.json"
    data.write_text(json.dumps([{"prompt": "The capital of France is", "subject": "France",
                                 "target": "Rome"}]))
    refused(capsys, tmp_path, *EDIT[:5], "--data", str(data), "--json", str(data), "--overwrite",
            match=f"--json {data}: is also the input --data")


def test_report_out_never_replaces_a_report_of_someone_else(tmp_path, capsys):
    run_dir = _run_folder(tmp_path / "run")
    mine = tmp_path / "myreport"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    refused(capsys, tmp_path, "report", str(run_dir), "--out", str(mine),
            match="holds report.md, which goldenlayers did not write")
    (run_dir / "afile").write_text("x")
    refused(capsys, tmp_path, "report", str(run_dir), "--out", str(run_dir / "afile"),
            match="is a file, not a folder")


def test_report_refuses_rows_of_another_model_or_seed(tmp_path, capsys):
    run_dir = _run_folder(tmp_path / "run", model="m", seed=0)
    row = {"model": "m", "dataset": "zsre", "split": "test", "editor": "r-rome", "layer": 0,
           "case_id": "1", "seed": 0, "rewrite_accuracy": 1.0}
    (run_dir / "zsre.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "seed": 3}) + "\n")
    refused(capsys, tmp_path, "report", str(run_dir), match="zsre.jsonl: line 2 has seed 3")
    (run_dir / "zsre.jsonl").write_text(json.dumps({**row, "model": "other"}) + "\n")
    refused(capsys, tmp_path, "report", str(run_dir), match="line 1 has model 'other'")


# --- issue 30: refused before any work, naming what and where -----------------------------------------


@pytest.fixture
def no_model_loads(monkeypatch):
    """A command that loads a model fails the test: its refusal came after work."""
    import goldenlayers.models
    import goldenlayers.models.load

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(goldenlayers.models, "load_model", loaded)
    monkeypatch.setattr(goldenlayers.models.load, "load_model", loaded)


@pytest.mark.parametrize("args, match", [
    (["locate", "--method", "cma", "-o", "combine=votes"], "unknown CMASettings setting 'combine'"),
    (["locate", "--method", "lga", "--layers", "0-3"],
     "--layers is not used by --method lga; it is an option of --method brute-force"),
    (["locate", "--method", "cma", "--profile", "easyedit"], "--profile is not used by --method cma"),
    (["locate", "--method", "lga", "--budget", "3"],
     "--budget is not used by --method lga; it is an option of --method staged"),
    (["locate", "--by", "locality"], "--by must be one of rewrite_accuracy, overall"),
    (["locate", "-o", "executor=slurm"], "unknown executor 'slurm'"),
    (["locate", "--method", "lga", "--editor", "rome"],
     "--editor is not used by --method lga; it is an option of --method brute-force"),
    (["locate", "--seed", "-5"], "Invalid value for '--seed'"),
    (["study", "--out", "{tmp}/run", "--seed", "-1"], "Invalid value for '--seed'"),
    (["study", "--out", "{tmp}/run", "--executor", "foo"], "unknown --executor 'foo'"),
    (["study", "--out", "{tmp}/afile"], "afile: is a file, not a folder"),
    (["study", "--out", "{tmp}/theirs"], "not a study's run folder (no study.json) and it holds"),
    (["study", "--out", "{tmp}/run", "--data", "{tmp}/edits.csv"],
     "edits.csv: benchmark files are JSON or JSON Lines; a CSV"),
    (["study", "--out", "{tmp}/run", "--data", "{tmp}/theirs"], "theirs: is a folder; give a data"),
    (["locate", "--data", "{tmp}/theirs"], "theirs: is a folder; give a data set file"),
    (["edit", "--layer", "abc", "--prompt", "{} is", "--subject", "Paris", "--target", "big"],
     "--layer expects a layer number or 'auto', got 'abc'"),
])
def test_refusals_come_before_any_work_and_leave_nothing(tmp_path, capsys, no_model_loads, args,
                                                         match):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    (tmp_path / "edits.csv").write_text("prompt,subject,target\nParis is,Paris,big\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    refused(capsys, tmp_path, *args, "--model", "tiny-llama", match=match)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model, match", [
    ("./no_such_model", "'./no_such_model': no such folder (a local model is a folder"),
    ("{tmp}/afile", "afile': is a file, not a model folder"),
])
def test_a_model_path_that_is_not_a_model_says_so(tmp_path, capsys, model, match):
    (tmp_path / "afile").write_text("x")
    refused(capsys, tmp_path, *EDIT[:1], "--model", model.replace("{tmp}", str(tmp_path)),
            *EDIT[3:], match=match)


def test_a_truncated_model_folder_names_the_file(edited, tmp_path, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(edited / "model", folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    refused(capsys, tmp_path, *EDIT[:1], "--model", str(folder), *EDIT[3:],
            match="a damaged model folder: model.safetensors is")


def test_a_full_disk_while_saving_names_the_folder_and_keeps_it(edited, tmp_path, capsys,
                                                                  monkeypatch):
    import errno

    import transformers

    def full(self, folder, *args, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", full)
    out = tmp_path / "model"
    status, _, err = run(capsys, *EDIT, "--out", str(out))
    assert status == 2 and f"{out}: could not write it: No space left on device" in err, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_deeply_nested_data_file_is_malformed_not_a_bug(tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    for name in ("deep.json", "deep.jsonl"):
        (tmp_path / name).write_text(deep)
        refused(capsys, tmp_path, "datasets", str(tmp_path / name), match="nested too deeply")
    refused(capsys, tmp_path, *EDIT[:5], "--data", str(tmp_path / "deep.json"),
            match="nested too deeply")


def test_datasets_says_how_locality_without_a_ground_truth_is_measured(tmp_path, capsys):
    record = {"subject": "Paris", "prompt": "Paris is the capital of", "target_new": "Italy",
              "ground_truth": "France",
              "locality": {"Relation_Specificity": [
                  {"prompt": "The Eiffel tower is in", "ground_truth": None},
                  {"prompt": "Berlin is in", "ground_truth": None,
                   "metric": "pre_post_consistency"}]}}
    (tmp_path / "mine.json").write_text(json.dumps([record]))
    status, out, err = run(capsys, "datasets", str(tmp_path / "mine.json"))
    assert status == 0, err
    assert ("2 locality pairs without a ground truth: measured against the unedited model's own "
            "greedy answer") in " ".join(out.split())
