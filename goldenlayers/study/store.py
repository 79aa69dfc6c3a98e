"""The results store: a SQLite database in the run directory that never loses finished work.

Each finished unit is committed in its own transaction the moment it finishes (WAL journal, so a
killed process loses at most the unit in flight and readers never block the writer). A run
directory remembers the settings it was made with and refuses different ones, naming them.

Tables: ``settings`` (one row, JSON), ``invocations`` (one row per start of the study: which units
it planned and did), ``units`` (key, kind, result JSON, cost JSON, the invocation that did it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from goldenlayers.errors import GoldenLayersError
from goldenlayers.study.units import EditRecord, EditUnit, LocateRecord, LocateUnit, unit_from_key

DB_NAME = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT NOT NULL, pid INTEGER NOT NULL,
    executor TEXT NOT NULL, planned INTEGER);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, result TEXT NOT NULL, cost TEXT NOT NULL,
    invocation INTEGER NOT NULL REFERENCES invocations(id), finished TEXT NOT NULL);
"""


class SettingsMismatch(GoldenLayersError):
    """The run directory was made with other settings."""


@dataclass(frozen=True)
class Invocation:
    id: int
    started: str
    pid: int
    executor: str
    planned: int | None


class ResultsStore:
    """Finished units of one study, keyed by unit key. Use ``ResultsStore.open(run_dir, settings)``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process in WAL
        self._db.executescript(SCHEMA)

    # --- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, run_dir: str | Path, settings: Mapping[str, object]) -> ResultsStore:
        """Open (or create) the store in ``run_dir`` for ``settings``; refuse other settings."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        store = cls(run_dir / DB_NAME)
        stored = store.settings()
        wanted = json.loads(json.dumps(dict(settings), sort_keys=True, default=str))
        if stored is None:
            store._db.execute("INSERT INTO settings (id, json) VALUES (1, ?)",
                              (json.dumps(wanted, sort_keys=True),))
        elif stored != wanted:
            store.close()
            raise SettingsMismatch(_mismatch_message(run_dir, stored, wanted))
        return store

    @classmethod
    def read(cls, run_dir: str | Path) -> ResultsStore:
        """Open an existing run directory for reading (the report)."""
        path = Path(run_dir) / DB_NAME
        if not path.is_file():
            raise GoldenLayersError(f"{run_dir} is not a study run directory (no {DB_NAME} in it)")
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def settings(self) -> dict[str, object] | None:
        row = self._db.execute("SELECT json FROM settings WHERE id = 1").fetchone()
        return None if row is None else json.loads(row[0])

    # --- invocations ----------------------------------------------------------------------------
    def begin_invocation(self, executor: str) -> int:
        cursor = self._db.execute(
            "INSERT INTO invocations (started, pid, executor) VALUES (?, ?, ?)",
            (_now(), os.getpid(), executor))
        return int(cursor.lastrowid)

    def set_planned(self, invocation: int, planned: int) -> None:
        self._db.execute("UPDATE invocations SET planned = ? WHERE id = ?", (planned, invocation))

    def invocations(self) -> list[Invocation]:
        rows = self._db.execute(
            "SELECT id, started, pid, executor, planned FROM invocations ORDER BY id").fetchall()
        return [Invocation(*row) for row in rows]

    def units_done_by(self, invocation: int) -> int:
        return self._db.execute("SELECT COUNT(*) FROM units WHERE invocation = ?",
                                (invocation,)).fetchone()[0]

    # --- units ----------------------------------------------------------------------------------
    def put(self, record: EditRecord | LocateRecord, invocation: int) -> None:
        """Commit one finished unit in its own transaction (a unit already there is an error)."""
        kind = "edit" if isinstance(record, EditRecord) else "locate"
        self._db.execute(
            "INSERT INTO units (key, kind, result, cost, invocation, finished) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.unit.key, kind, record.result_json(), record.cost_json(), invocation, _now()))

    def done_keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM units")}

    def has(self, unit: EditUnit | LocateUnit) -> bool:
        return self._db.execute("SELECT 1 FROM units WHERE key = ?", (unit.key,)).fetchone() is not None

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM units").fetchone()[0]

    def locate_record(self, unit: LocateUnit) -> LocateRecord | None:
        row = self._db.execute("SELECT result, cost FROM units WHERE key = ?", (unit.key,)).fetchone()
        return None if row is None else LocateRecord.from_row(unit, *row)

    def records(self) -> Iterator[EditRecord | LocateRecord]:
        for key, result, cost in self._db.execute("SELECT key, result, cost FROM units ORDER BY key"):
            unit = unit_from_key(key)
            if isinstance(unit, EditUnit):
                yield EditRecord.from_row(unit, result, cost)
            else:
                yield LocateRecord.from_row(unit, result, cost)

    def results(self) -> dict[str, str]:
        """Unit key -> result JSON: what two runs of the same settings must agree on."""
        return dict(self._db.execute("SELECT key, result FROM units"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())


def _mismatch_message(run_dir: Path, stored: dict, wanted: dict) -> str:
    differing = sorted(set(stored) | set(wanted))
    parts = [f"{name}: {stored.get(name, '(unset)')!r} there, {wanted.get(name, '(unset)')!r} now"
             for name in differing if stored.get(name) != wanted.get(name)]
    return (f"run directory {run_dir} was made with other settings ({'; '.join(parts)}); "
            "rerun with the same settings to resume it, or choose another --out")
