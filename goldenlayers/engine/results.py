"""Result files: one JSON line per finished unit, appended and synced the moment it finishes.

A run folder (``results/<model>/`` in the campaign, any ``--out`` of a study) holds
- ``<data set>.jsonl``: one ``CellRow`` per line (every editor, split and layer of that data set);
- ``<data set>.locate.jsonl``: one ``LocateRow`` per line (LGA, its gradient products, CMA);
- ``study.json``: what the rows were made with (see ``study.settings``).

Text, so results can be committed, diffed and merged; append-only, so a killed process loses at
most the line it was writing (a torn last line is cut off when the file is next opened for
appending, and its unit is simply done again). Rows name their own model, data set, split, editor,
layer, case id and seed, so files from several runs and machines combine.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldenlayers.engine.cell import CellRow
from goldenlayers.errors import GoldenLayersError

log = logging.getLogger(__name__)

CELLS_SUFFIX = ".jsonl"
LOCATE_SUFFIX = ".locate.jsonl"


@dataclass(frozen=True)
class LocateRow:
    """A locator's result on one data set's split: ``result`` is its JSON form (``LayerScores``
    for lga and cma; the gradient products of every reading for lga-products)."""

    model: str
    dataset: str
    split: str
    method: str
    seed: int
    result: dict[str, Any]
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.model, self.dataset, self.split, self.method, self.seed)

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "dataset": self.dataset, "split": self.split,
                           "method": self.method, "seed": self.seed, "result": self.result,
                           "seconds": round(self.seconds, 4), "notes": list(self.notes)},
                          sort_keys=True, default=float)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocateRow:
        return cls(str(data["model"]), str(data["dataset"]), str(data["split"]),
                   str(data["method"]), int(data["seed"]), dict(data["result"]),
                   float(data.get("seconds", 0.0)), tuple(data.get("notes") or ()))


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line that a killed writer left without its newline."""
    with open(path, "rb+") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        if size == 0:
            return
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return
        data = file.seek(0) or file.read()
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes); its unit will be redone",
                    path, size - keep)
        file.truncate(keep)


def append_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Append each line and sync it to disk before returning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _cut_torn_tail(path)
    with open(path, "a", encoding="utf-8") as file:
        for line in lines:
            file.write(line.rstrip("\n") + "\n")
        file.flush()
        os.fsync(file.fileno())


def read_json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each line; a torn last line is skipped, any other line that is not
    a JSON object is an error naming the file and the line."""
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as file:
        lines = file.read().split("\n")
    torn_tail = lines[-1] != ""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            if torn_tail and number == len(lines):
                log.warning("%s: skipping a torn last line", path)
                return
            raise GoldenLayersError(f"{path}, line {number}: not a results row ({error})") from None
        yield number, data


def read_cells(path: str | Path) -> list[CellRow]:
    rows = []
    for number, data in read_json_lines(path):
        try:
            rows.append(CellRow.from_dict(data))
        except (KeyError, TypeError, ValueError) as error:
            raise GoldenLayersError(f"{path}, line {number}: not a cell row "
                                    f"(missing or bad field {error})") from None
    return rows


def read_locate_rows(path: str | Path) -> list[LocateRow]:
    rows = []
    for number, data in read_json_lines(path):
        try:
            rows.append(LocateRow.from_dict(data))
        except (KeyError, TypeError, ValueError) as error:
            raise GoldenLayersError(f"{path}, line {number}: not a locate row "
                                    f"(missing or bad field {error})") from None
    return rows


class ResultsFolder:
    """The result files of one folder: read them all, append to the one of a data set."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def cells_file(self, dataset: str) -> Path:
        return self.path / f"{_file_name(dataset)}{CELLS_SUFFIX}"

    def locate_file(self, dataset: str) -> Path:
        return self.path / f"{_file_name(dataset)}{LOCATE_SUFFIX}"

    def cells(self) -> list[CellRow]:
        """Every cell row of every data set file; a unit present twice keeps its first row."""
        seen, rows = set(), []
        for path in sorted(self.path.glob(f"*{CELLS_SUFFIX}")):
            if path.name.endswith(LOCATE_SUFFIX):
                continue
            for row in read_cells(path):
                if row.key not in seen:
                    seen.add(row.key)
                    rows.append(row)
        return rows

    def locate_rows(self) -> list[LocateRow]:
        rows: dict[tuple, LocateRow] = {}
        for path in sorted(self.path.glob(f"*{LOCATE_SUFFIX}")):
            for row in read_locate_rows(path):
                rows.setdefault(row.key, row)
        return list(rows.values())

    def add_cell(self, row: CellRow) -> None:
        append_lines(self.cells_file(row.key.dataset), [row.to_json()])

    def add_locate(self, row: LocateRow) -> None:
        append_lines(self.locate_file(row.dataset), [row.to_json()])


def _file_name(dataset: str) -> str:
    """A data set's file stem: its name, or a path's stem, with nothing but safe characters."""
    stem = Path(dataset).name
    for suffix in (".json", ".jsonl", ".csv"):
        stem = stem.removesuffix(suffix)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "data"
