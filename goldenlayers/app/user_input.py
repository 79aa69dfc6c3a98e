"""What a user gives the command line, checked before any work: edit requests written by hand (one
from the command line, or a small file of them), and the places commands write to.

    --prompt "The mother tongue of {} is" --subject "Danielle Darrieux" --target English
    --prompt "The mother tongue of Danielle Darrieux is" --subject "Danielle Darrieux" --target English

A small file is JSON (an object or a list of them), JSON Lines or CSV with the columns prompt,
subject and target (target_new and ground_truth/target_old are read too; case_id is optional).
Any other file or name goes to ``goldenlayers.data.load_dataset``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from goldenlayers.data.formats import RecordError, own_case_id
from goldenlayers.data.records import EditRequest
from goldenlayers.errors import InputError
from goldenlayers.text import find_subject

SIMPLE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")


def request_from_text(prompt: str, subject: str, target: str, *, case_id: str = "1",
                      target_old: str | None = None, source: str = "command line") -> EditRequest:
    """A request from a prompt with "{}" where the subject goes, or a prompt containing it."""
    for name, value in (("prompt", prompt), ("subject", subject), ("target", target)):
        if not isinstance(value, str) or not value.strip():
            raise InputError("must be a non-empty string", source=source, field=name)
    if "{}" in prompt:
        prompt = prompt.replace("{}", subject)
    elif find_subject(prompt, subject) is None:
        raise InputError(f"the subject {subject!r} does not occur in the prompt {prompt!r}; write "
                         f"it there or put {{}} where it goes", source=source, field="subject")
    return EditRequest(case_id=str(case_id), prompt=prompt, subject=subject, target_new=target,
                       target_old=target_old or None, source=source)


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if path.suffix in (".jsonl", ".ndjson"):
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise InputError(f"malformed JSON on line {number}: {error.msg}",
                                     source=str(path)) from None
        return records
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def _is_simple(records: list[Any]) -> bool:
    return bool(records) and all(isinstance(r, dict) and {"prompt", "subject", "target"} <= r.keys()
                                 for r in records)


def read_simple_file(path: str | Path) -> list[EditRequest] | None:
    """Requests from a small prompt/subject/target file, or None when the file is not one."""
    path = Path(path)
    if path.suffix not in SIMPLE_SUFFIXES or not path.is_file():
        return None
    try:
        records = _records(path)
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", source=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise InputError(f"cannot read: {error}", source=str(path)) from error
    if not _is_simple(records):
        if path.suffix == ".csv":  # no benchmark comes as CSV: say what the columns must be
            columns = ", ".join(records[0].keys()) if records else "none"
            raise InputError(f"a CSV of edits needs the columns prompt, subject and target; this "
                             f"one has {columns}", source=str(path))
        return None
    requests = []
    for index, record in enumerate(records):
        try:
            requests.append(request_from_text(
                record["prompt"], record["subject"], record["target"],
                case_id=own_case_id(record, "case_id", str(index + 1)),
                target_old=record.get("target_old") or record.get("ground_truth"),
                source=f"{path}, record {index}"))
        except InputError:
            raise
        except RecordError as error:
            raise InputError(error.message, source=str(path), index=index,
                             field=error.field) from None
        except Exception as error:  # a malformed value: say where
            raise InputError(str(error), source=str(path), index=index) from error
    from goldenlayers.data.load import duplicate_case_ids

    repeated = duplicate_case_ids(requests)
    if repeated:
        raise InputError(f"case ids must be unique; repeated: {', '.join(map(repr, repeated[:10]))}",
                         source=str(path), field="case_id")
    return requests


def load_requests(data: str | None = None, *, prompt: str | None = None, subject: str | None = None,
                  target: str | None = None, n: int | None = None) -> list[EditRequest]:
    """The requests of the edit command: from --prompt/--subject/--target, or from --data."""
    if prompt is not None or subject is not None or target is not None:
        if data is not None:
            raise InputError("give either --data or --prompt/--subject/--target, not both")
        if prompt is None or subject is None or target is None:
            raise InputError("--prompt, --subject and --target go together")
        return [request_from_text(prompt, subject, target)]
    if data is None:
        raise InputError("nothing to edit: give --data, or --prompt, --subject and --target")
    requests = read_simple_file(data)
    if requests is None:
        from goldenlayers.data import load_dataset

        requests = load_dataset(data).requests
    return requests[:n] if n else requests


# --- where commands write, checked before any work ----------------------------------------------


def patch_output(patch: str, model: str, out: str | None, in_place: bool, overwrite: bool) -> str:
    """The folder ``patch apply|remove`` saves the model to: ``--out``, or the ``--model`` folder
    itself with ``--in-place``; one of the two is required, so that nothing is claimed unsaved."""
    from goldenlayers.files.outputs import check_output_folder

    if out is None and not in_place:
        raise InputError("nothing would be saved: give --out FOLDER for the patched model, or "
                         "--in-place to write it over the --model folder")
    if out is not None and in_place:
        raise InputError("give either --out or --in-place, not both")
    if in_place:
        if not Path(model).is_dir():
            raise InputError(f"--in-place writes over the --model folder, and {model!r} is not a "
                             f"local folder (a preset or a Hugging Face id); give --out FOLDER")
        return str(check_output_folder(model, option="--in-place", overwrite=True,
                                       inputs=[("patch", patch)]))
    if Path(out).expanduser().resolve() == Path(model).expanduser().resolve():
        raise InputError(f"--out {out} is the --model folder; pass --in-place to write over it")
    return str(check_output_folder(out, overwrite=overwrite,
                                   inputs=[("--model", model), ("patch", patch)]))


def check_study_options(out: str, data: str, executor: str) -> None:
    """``study``'s run folder, data sets and executor, refused with what is wrong before any work:
    ``--out`` must be a run folder (``study.json``: resumed), a new or an empty folder."""
    from goldenlayers.data.load import check_dataset_source
    from goldenlayers.files.outputs import check_output_folder, shown_names
    from goldenlayers.engine.run import EXECUTORS
    from goldenlayers.study.store import MANIFEST

    if executor not in EXECUTORS:
        raise InputError(f"unknown --executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    folder = Path(out).expanduser()
    if folder.is_dir() and not (folder / MANIFEST).exists() \
            and not (folder / "results.sqlite").exists():
        present = sorted(p.name for p in folder.iterdir() if p.name != ".lock")
        if present:
            raise InputError(f"--out {folder}: not a study's run folder (no {MANIFEST}) and it "
                             f"holds other files ({shown_names(present)}); choose a new or empty "
                             f"folder")
    check_output_folder(folder, overwrite=True)  # a file, or a folder we cannot write in
    for name in (part.strip() for part in data.split(",") if part.strip()):
        check_dataset_source(name)
