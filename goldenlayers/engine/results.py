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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldenlayers.engine.cell import CellRow
from goldenlayers.files.jsonfiles import append_json_line, read_json_lines

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

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "split": self.split,
                "method": self.method, "seed": self.seed, "result": self.result,
                "seconds": round(self.seconds, 4), "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocateRow:
        return cls(str(data["model"]), str(data["dataset"]), str(data["split"]),
                   str(data["method"]), int(data["seed"]), dict(data["result"]),
                   float(data.get("seconds", 0.0)), tuple(data.get("notes") or ()))


CELL_FIELDS = ("model", "dataset", "split", "editor", "layer", "case_id", "seed")
LOCATE_FIELDS = ("model", "dataset", "split", "method", "seed", "result")


def _has(fields: tuple[str, ...]):
    return lambda record: isinstance(record, dict) and all(name in record for name in fields)


def read_cells(path: str | Path) -> list[CellRow]:
    """The cell rows of a results file (a torn last line is left out; any other bad line is an
    error naming the file and the line)."""
    return [CellRow.from_dict(record)
            for record in read_json_lines(path, "results file", check=_has(CELL_FIELDS))]


def read_locate_rows(path: str | Path) -> list[LocateRow]:
    return [LocateRow.from_dict(record)
            for record in read_json_lines(path, "locate results file", check=_has(LOCATE_FIELDS))]


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
        self.path.mkdir(parents=True, exist_ok=True)
        append_json_line(self.cells_file(row.key.dataset), row.to_dict())

    def add_locate(self, row: LocateRow) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        append_json_line(self.locate_file(row.dataset), row.to_dict())


def _file_name(dataset: str) -> str:
    """A data set's file stem: its name, or a path's stem, with nothing but safe characters."""
    stem = Path(dataset).name
    for suffix in (".json", ".jsonl", ".csv"):
        stem = stem.removesuffix(suffix)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "data"
