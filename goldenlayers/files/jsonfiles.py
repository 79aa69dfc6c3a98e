"""JSON and JSON Lines files that name themselves when they are not what they should be: results
files appended one fsynced line at a time, where a last line cut short by a kill is dropped."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goldenlayers.errors import GoldenLayersError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class CorruptFile(GoldenLayersError):
    """A file we wrote (results, cache) is not what it should be; names the file."""



def read_json(path: str | Path, what: str = "file") -> Any:
    """A JSON file's value; ``CorruptFile`` naming the file when it is unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise CorruptFile(f"{path}: not a valid {what} ({reason}); move it away or rerun to "
                          f"rebuild it") from None
    except OSError as error:
        raise CorruptFile(f"{path}: cannot read the {what}: {error.strerror or error}") from None


def read_json_lines(path: str | Path, what: str = "results file",
                    check: Callable[[Any], bool] = lambda record: isinstance(record, dict)) -> list[Any]:
    """The records of a JSON Lines file written by ``append_json_line``. A last line cut short
    (no newline: the writer was killed mid-write) is left out with a warning; any other bad line
    raises ``CorruptFile`` naming the file and the line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorruptFile(f"{path}: cannot read the {what}: {error.strerror or error}") from None
    lines = data.split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
            if not check(record):
                raise ValueError("not a record of this file")
        except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError too
            if number == len(lines):  # the last line has no newline: an interrupted write
                log.warning("%s: line %d was cut short (an interrupted write); left out", path, number)
                break
            raise CorruptFile(f"{path}: line {number} is not a valid {what} record ({error}); "
                              f"move the file away or rerun into a new folder") from None
        records.append(record)
    return records


def append_json_line(path: str | Path, record: Any) -> None:
    """Append one record as a line and flush it to disk (a crash loses at most this line)."""
    line = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode("utf-8")
    with open(path, "ab+") as file:
        end = file.seek(0, os.SEEK_END)
        complete = _end_of_last_line(file, end)
        if complete < end:  # an earlier write was cut short: drop its partial line
            log.warning("%s: dropped a line cut short by an interrupted write", path)
            file.truncate(complete)
        file.write(line)
        file.flush()
        os.fsync(file.fileno())


def _end_of_last_line(file, end: int) -> int:
    """Offset just after the last newline of an open binary file (0 when it has none)."""
    position = end
    while position > 0:
        start = max(0, position - CHUNK)
        file.seek(start)
        chunk = file.read(position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0
