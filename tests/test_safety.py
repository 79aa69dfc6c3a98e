"""goldenlayers.files: atomic writes, output checks, staged folders, the run lock, digests and
results files that name themselves when broken."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from goldenlayers.errors import GoldenLayersError
from goldenlayers.files import outputs
from goldenlayers.files.atomic import atomic_path, atomic_write_json, atomic_write_text
from goldenlayers.files.digests import InputChanged, check_unchanged, file_digest, settings_digest
from goldenlayers.files.jsonfiles import CorruptFile, append_json_line, read_json, read_json_lines
from goldenlayers.files.locks import RunLocked, run_lock
from goldenlayers.files.outputs import (OutputPathError, check_output_folder, check_output_path,
                                        staged_folder)

root = os.geteuid() == 0  # permission bits do not stop root


def test_atomic_write_replaces_whole_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "r.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic_path(target) as staging:
            staging.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.json"]  # no temporary left
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_check_output_path_refuses_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match=r"--json .*file is a file, not a folder"):
        check_output_path(tmp_path / "file" / "out.json", option="--json")
    with pytest.raises(OutputPathError, match=r"--plot .*expected a file ending in \.png.*'\.txt'"):
        check_output_path(tmp_path / "plot.txt", option="--plot", suffixes=(".png",))
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_path(tmp_path, option="--json")
    assert check_output_path(tmp_path / "new" / "deeper" / "r.JSON", suffixes=(".json",))
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert issubclass(OutputPathError, GoldenLayersError)


@pytest.mark.skipif(root, reason="root can write anywhere")
def test_check_output_path_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="permission denied"):
            check_output_path(locked / "missing" / "out.json", option="--json")
    finally:
        locked.chmod(0o700)


def test_output_folder_of_someone_else_is_refused_and_never_emptied(tmp_path):
    foreign = tmp_path / "their-model"
    foreign.mkdir()
    (foreign / "model-00001-of-00002.safetensors").write_text("theirs")
    with pytest.raises(OutputPathError, match="did not write .*model-00001-of-00002.safetensors"):
        check_output_folder(foreign)
    check_output_folder(foreign, overwrite=True)
    with staged_folder(foreign) as staging:
        (staging / "model.safetensors").write_text("ours")
    assert (foreign / "model-00001-of-00002.safetensors").read_text() == "theirs"
    assert (foreign / "model.safetensors").read_text() == "ours"
    with pytest.raises(OutputPathError, match="is a file"):
        check_output_folder(foreign / "model.safetensors")


def test_our_own_output_folder_is_replaced_file_by_file(tmp_path):
    out = tmp_path / "edited"
    with staged_folder(out) as staging:
        (staging / "a.bin").write_text("1")
        (staging / "old-only.bin").write_text("1")
    assert outputs.folder_is_ours(out)
    check_output_folder(out)  # our own earlier output: no --overwrite needed
    (out / "notes.txt").write_text("the user's")
    with staged_folder(out) as staging:
        (staging / "a.bin").write_text("2")
    assert (out / "a.bin").read_text() == "2"
    assert not (out / "old-only.bin").exists()  # ours, and not in the new output
    assert (out / "notes.txt").read_text() == "the user's"  # never ours: kept
    with pytest.raises(RuntimeError):
        with staged_folder(out) as staging:
            (staging / "a.bin").write_text("3")
            raise RuntimeError("killed")
    assert (out / "a.bin").read_text() == "2"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _try_lock(run_dir, queue):
    try:
        with run_lock(run_dir):
            queue.put("locked")
    except RunLocked as error:
        queue.put(str(error))


def test_run_lock_refuses_a_second_holder_and_names_the_pid(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(RunLocked, match=rf"run is in use by another run \(pid {os.getpid()}\)"):
            with run_lock(tmp_path / "run"):
                pass
        queue = multiprocessing.get_context("fork").Queue()
        process = multiprocessing.get_context("fork").Process(target=_try_lock,
                                                              args=(tmp_path / "run", queue))
        process.start()
        process.join(30)
        assert "in use by another run" in queue.get(timeout=5)
    with run_lock(tmp_path / "run"):  # released on exit
        pass


def test_digests_and_changed_inputs_are_named(tmp_path):
    data = tmp_path / "cf.json"
    data.write_text('[{"a": 1}]')
    before = {"cf.json": file_digest(data)}
    check_unchanged(before, {"cf.json": file_digest(data)}, where="run")
    data.write_text('[{"a": 2}]')
    with pytest.raises(InputChanged, match=r"run: the data file changed since the run started: cf\.json"):
        check_unchanged(before, {"cf.json": file_digest(data)}, where="run")
    assert settings_digest({"a": 1, "b": 2}) == settings_digest({"b": 2, "a": 1})
    with pytest.raises(InputChanged, match="settings"):
        check_unchanged({"settings": "1"}, {"settings": "2"}, where="run", what="settings")


def test_broken_results_files_name_themselves(tmp_path):
    garbage = tmp_path / "results.json"
    garbage.write_bytes(b"\x00\xffnot json")
    with pytest.raises(CorruptFile, match=r"results.json: not a valid results file"):
        read_json(garbage, "results file")
    lines = tmp_path / "results.jsonl"
    append_json_line(lines, {"unit": 1})
    with open(lines, "a") as file:
        file.write('{"unit": 2, "cut sh')  # a writer killed mid-line
    assert read_json_lines(lines) == [{"unit": 1}]
    append_json_line(lines, {"unit": 3})  # the partial line is dropped, not glued to this one
    assert read_json_lines(lines) == [{"unit": 1}, {"unit": 3}]
    lines.write_text('{"unit": 1}\ngarbage\n{"unit": 3}\n')
    with pytest.raises(CorruptFile, match="results.jsonl: line 2 is not a valid"):
        read_json_lines(lines)


def _dead_pid() -> int:
    """A pid no process has now (a child that has exited and been reaped)."""
    child = multiprocessing.Process(target=int)
    child.start()
    child.join()
    return child.pid


def test_a_save_removes_what_a_killed_save_left_but_not_a_live_one(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale_folder = tmp_path / f".model.{dead}.abcd.tmp"
    stale_folder.mkdir()
    (stale_folder / "model.safetensors").write_bytes(b"half")
    stale_file = tmp_path / f".r.json.{dead}.efgh.tmp"
    stale_file.write_text("half")
    live = tmp_path / f".model.{alive}.ijkl.tmp"
    live.mkdir()
    with staged_folder(tmp_path / "model") as staging:
        (staging / "config.json").write_text("{}")
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert not stale_folder.exists() and not stale_file.exists() and live.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model", "r.json"]


def test_a_single_file_output_is_ours_only_as_we_wrote_it(tmp_path):
    path = tmp_path / "r.json"
    outputs.write_output_json(path, {"a": 1})
    assert outputs.file_is_ours(path)
    check_output_path(path, option="--json")  # ours: replaced without --overwrite
    path.write_text('{"a": 2}')
    assert not outputs.file_is_ours(path)
    with pytest.raises(OutputPathError, match="--json .*r.json: the file exists and goldenlayers "
                                              "did not write it"):
        check_output_path(path, option="--json")
    check_output_path(path, option="--json", overwrite=True)
    with pytest.raises(OutputPathError, match="is also the input --data"):
        check_output_path(path, option="--json", overwrite=True, inputs=[("--data", str(path))])


def test_a_refused_run_leaves_no_lock_and_no_new_folder(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(GoldenLayersError, match="refused"):
        with run_lock(run_dir):
            raise GoldenLayersError("refused")
    assert not run_dir.exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    with pytest.raises(GoldenLayersError):
        with run_lock(theirs):
            raise GoldenLayersError("refused")
    assert list(theirs.iterdir()) == []
    with run_lock(run_dir):
        (run_dir / "rows.jsonl").write_text("{}\n")
    assert (run_dir / "rows.jsonl").is_file()  # a finished run keeps its folder


def test_json_nested_too_deeply_is_a_corrupt_file(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorruptFile, match="nested too deeply"):
        read_json(path)
    with pytest.raises(CorruptFile, match="line 1"):
        path.write_text("[" * 100_000 + "]" * 100_000 + "\n{}\n")
        read_json_lines(path)
