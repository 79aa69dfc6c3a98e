"""Read a benchmark file (JSON array, ``{"records": [...]}`` or JSON Lines) into a `Dataset`.

`load_dataset("zsre")` reads a bundled sample; `load_dataset("path/to/file.json")` reads a full
file. The format is detected from the records' keys (`formats.FORMATS`); ``format=`` forces one.
Every bad record raises an `InputError` naming the file, the record index and the field, unless
``skip_invalid=True``, which skips it, logs it, and counts it in `Dataset.skipped`. Case ids that
repeat are always an error naming them: results are keyed by case id.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from goldenlayers.data.formats import FORMATS, RecordError, format_of
from goldenlayers.data.records import EditRequest
from goldenlayers.errors import InputError

log = logging.getLogger(__name__)

# Every metric a request can be scored on, in canonical order (evaluate.metrics computes them).
METRICS = ("rewrite_accuracy", "rephrase_accuracy", "locality", "portability", "fluency")
BUNDLED = ("counterfact", "zsre", "wikibio", "wikicounterfact", "wikirecent")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
FORMAT_ALIASES = {"rome": "counterfact-rome", "zsre": "zsre-mend", "mend": "zsre-mend",
                  "counterfact-flat": "counterfact", "qna": "counterfact-qna"}


@dataclass
class Dataset:
    """Edit requests read from one file, with what that file supports.

    ``metrics``: the metric names these requests can be scored on (rewrite accuracy and fluency
    always; rephrase, locality and portability where at least one request has those prompts).
    ``skipped`` / ``skip_reasons``: invalid records left out under ``skip_invalid=True``.
    ``notes``: counts of things the file lacks that were left out (e.g. locality pairs without an answer).
    ``origin``: where the records come from, in words.
    """

    name: str
    requests: list[EditRequest]
    format: str
    metrics: tuple[str, ...]
    path: Path | None = None
    skipped: int = 0
    skip_reasons: tuple[str, ...] = ()
    notes: dict[str, int] = field(default_factory=dict)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.requests)

    def __iter__(self):
        return iter(self.requests)


def samples_dir() -> Path:
    """The folder of bundled samples inside the installed package."""
    return Path(str(resources.files("goldenlayers.data") / "samples"))


def bundled_manifest() -> dict[str, Any]:
    """How the samples were drawn: per name, the source file, its size and the chosen indices."""
    return json.loads((samples_dir() / "manifest.json").read_text(encoding="utf-8"))


def load_dataset(name_or_path: str | Path, *, format: str | None = None, limit: int | None = None,
                 skip_invalid: bool = False) -> Dataset:
    """Read a bundled sample by name (``counterfact``, ``zsre``, ``wikibio``, ``wikicounterfact``,
    ``wikirecent``) or a benchmark file by path. ``limit`` reads only the first ``limit`` records."""
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}", field="limit")
    key = str(name_or_path)
    if key in BUNDLED and not Path(key).exists():
        entry = bundled_manifest()["samples"][key]
        path, name, ids = samples_dir() / f"{key}.json", key, [str(i) for i in entry["indices"]]
        origin = f"sample of {Path(entry['source']).name} ({entry['source_records']:,})"
    else:
        path = dataset_file(name_or_path)
        name, ids, origin = path.stem, None, str(path)
    records = read_records(path)
    if limit is not None:
        records = records[:limit]
    fmt = resolve_format(format, records, path)
    dataset = parse_records(records, fmt, name=name, path=path, ids=ids, skip_invalid=skip_invalid)
    dataset.origin = origin
    return dataset


def dataset_file(name_or_path: str | Path) -> Path:
    """The benchmark file a name that is not a bundled data set points at; ``InputError`` saying
    what the path is and why it cannot be read as one (missing, a folder, a CSV). Reads nothing."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        raise InputError(f"is a folder; give a data set file (JSON or JSON Lines) or a bundled "
                         f"data set ({', '.join(BUNDLED)})", source=str(path))
    if not path.is_file():
        raise InputError(f"no such file, and not a bundled data set ({', '.join(BUNDLED)})",
                         source=str(path))
    if path.suffix.lower() == ".csv":
        raise InputError("benchmark files are JSON or JSON Lines; a CSV of prompt, subject and "
                         "target is read by `goldenlayers edit --data` only", source=str(path))
    return path


def check_dataset_source(name_or_path: str | Path) -> None:
    """Refuse a name that is neither a bundled data set nor a readable benchmark file path,
    before any work (``dataset_file``)."""
    if not (str(name_or_path) in BUNDLED and not Path(str(name_or_path)).exists()):
        dataset_file(name_or_path)


def read_records(path: Path) -> list[Any]:
    """The records of a JSON array or JSON Lines file (blank lines ignored)."""
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read: {error}", source=str(path)) from error
    if path.suffix.lower() not in JSON_LINES_SUFFIXES:
        try:
            data = json.loads(content)
        except RecursionError:
            raise InputError("malformed JSON: nested too deeply to be a data set",
                             source=str(path)) from None
        except json.JSONDecodeError as error:
            if not _looks_like_json_lines(content):
                raise InputError(f"malformed JSON at line {error.lineno}, column {error.colno}: "
                                 f"{error.msg}", source=str(path)) from error
        else:
            if isinstance(data, dict) and isinstance(data.get("records"), list):
                return data["records"]  # an export's {"records": [...]} wrapper
            if not isinstance(data, list):
                keys = f" with keys {sorted(data)[:8]}" if isinstance(data, dict) else ""
                raise InputError(f"expected a JSON array of records, an object with a "
                                 f"\"records\" array, or JSON Lines; got a {type(data).__name__}"
                                 f"{keys}", source=str(path))
            return data
    return _read_json_lines(content, path)


def _looks_like_json_lines(content: str) -> bool:
    first = next((line for line in content.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _read_json_lines(content: str, path: Path) -> list[Any]:
    records = []
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except RecursionError:
            raise InputError(f"malformed JSON on line {line_number}: nested too deeply",
                             source=str(path), index=len(records)) from None
        except json.JSONDecodeError as error:
            raise InputError(f"malformed JSON on line {line_number}, column {error.colno}: "
                             f"{error.msg}", source=str(path), index=len(records)) from error
    return records


def resolve_format(format: str | None, records: list[Any], path: Path) -> str:
    """The forced format (checked against the known names), else the one most records match."""
    if format is not None:
        name = FORMAT_ALIASES.get(format, format)
        if name not in FORMATS:
            raise InputError(f"unknown format {format!r}; known: {', '.join(FORMATS)}",
                             source=str(path), field="format")
        return name
    if not records:
        raise InputError("no records to tell the format from; pass format=", source=str(path))
    votes = Counter(format_of(record) for record in records[:50])
    votes.pop(None, None)
    if not votes:
        keys = sorted(records[0]) if records and isinstance(records[0], dict) else []
        raise InputError(f"cannot tell the format from the records (keys of record 0: {keys}); "
                         f"pass format= one of {', '.join(FORMATS)}", source=str(path))
    return votes.most_common(1)[0][0]


def parse_records(records: list[Any], fmt: str, *, name: str, path: Path | None,
                  ids: list[str] | None = None, skip_invalid: bool = False) -> Dataset:
    """Parse raw records with one format. ``ids`` gives each record's default case id (bundled
    samples use their index in the full file, so ids match the full file's)."""
    parse, source = FORMATS[fmt].parse, str(path) if path else name
    requests, reasons, notes = [], [], Counter()
    for index, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise RecordError("(record)", f"must be an object, got {type(record).__name__}")
            requests.append(parse(record, ids[index] if ids else str(index), name, notes))
        except (RecordError, InputError) as error:
            problem = InputError(getattr(error, "message", str(error)), source=source,
                                 index=index, field=getattr(error, "field", None))
            if not skip_invalid:
                raise problem from error
            reasons.append(str(problem))
            log.info("skipped %s", problem)
    repeated = duplicate_case_ids(requests)
    if repeated:
        shown = ", ".join(repr(case) for case in repeated[:10])
        more = f" and {len(repeated) - 10} more" if len(repeated) > 10 else ""
        raise InputError(f"case ids must be unique; repeated: {shown}{more}", source=source,
                         field="case_id")
    if reasons:
        log.warning("%s: skipped %d invalid record(s) of %d", source, len(reasons), len(records))
    for what, count in notes.items():
        log.info("%s: left out %d %s", source, count, what)
    return Dataset(name=name, requests=requests, format=fmt, metrics=supported_metrics(requests),
                   path=path, skipped=len(reasons), skip_reasons=tuple(reasons), notes=dict(notes))


def duplicate_case_ids(requests: list[EditRequest]) -> list[str]:
    """The case ids that occur more than once, in order of first occurrence."""
    counts = Counter(r.case_id for r in requests)
    return [case for case, count in counts.items() if count > 1]


def supported_metrics(requests: list[EditRequest]) -> tuple[str, ...]:
    """The metrics these requests can be scored on, in the canonical order of METRICS."""
    present = {"rewrite_accuracy": bool(requests), "fluency": bool(requests),
               "rephrase_accuracy": any(r.rephrase_prompts for r in requests),
               "locality": any(r.locality for r in requests),
               "portability": any(r.portability for r in requests)}
    return tuple(metric for metric in METRICS if present[metric])
