"""Files written so that nothing is lost: atomic writes, output paths checked before the work,
folders we never clobber, a lock per run folder, and digests that tell when an input changed.

- ``atomic_path`` / ``atomic_write_bytes`` / ``atomic_write_text`` / ``atomic_write_json``: a
  temporary file in the same folder, flushed to disk, then renamed over the target, so a reader
  sees the old file or the new one, never half of one.
- ``check_output_path`` / ``check_output_folder``: called before minutes of work, so an unwritable
  ``--json`` or a ``.txt`` for a PNG is an error at once, not after the result is computed.
- ``staged_folder``: a model folder written beside the target and moved in; it only ever removes
  files that an earlier goldenlayers output recorded as its own (``OUTPUT_MARKER``).
- ``run_lock``: one writer per run folder; a second one is refused with the holder's pid.
- ``file_digest`` / ``settings_digest`` / ``check_unchanged``: a run records what it was made
  from and refuses to mix in results from a changed file.
- ``read_json`` / ``read_json_lines`` / ``append_json_line``: results files that name themselves
  when they are not what they should be.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goldenlayers.errors import GoldenLayersError

log = logging.getLogger(__name__)

OUTPUT_MARKER = ".goldenlayers-output.json"  # in a folder we wrote: the files we wrote there
LOCK_NAME = ".lock"
CHUNK = 1 << 20


class OutputPathError(GoldenLayersError):
    """An output path cannot be written (or must not be); names the option and the path."""


class RunLocked(GoldenLayersError):
    """Another process is writing the same run folder."""


class CorruptFile(GoldenLayersError):
    """A file we wrote (results, cache) is not what it should be; names the file."""


class InputChanged(GoldenLayersError):
    """An input a run was made from has changed since; names what changed."""


# --- atomic writes --------------------------------------------------------------------------------


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; write it in the body. On a normal exit it is flushed to
    disk and renamed over ``path``; on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    os.chmod(staging, 0o666 & ~_umask())  # mkstemp's file is private; a plain write's is not
    try:
        yield Path(staging)
        _fsync_file(staging)
        os.replace(staging, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as staging:
        staging.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=indent, default=str) + "\n")


def _fsync_file(path: str | Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(descriptor)


# --- output paths, checked before the work -------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def _check_can_create_in(path: Path, option: str) -> None:
    """The folder that will hold ``path`` exists, or can be made, and is writable."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise OutputPathError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        made = "" if ancestor == path.parent else f" (to make {path.parent})"
        raise OutputPathError(f"{option} {path}: cannot write in {ancestor}{made}: permission denied")


def check_output_path(path: str | Path, *, option: str = "--out",
                      suffixes: tuple[str, ...] = ()) -> Path:
    """Raise ``OutputPathError`` naming ``option`` unless a file can be written at ``path``:
    the right extension (one of ``suffixes``, case-insensitive, when given), not a folder, its
    parent a folder that exists or can be made, writable. Creates nothing."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder; give a file name")
    if suffixes and path.suffix.lower() not in {s.lower() for s in suffixes}:
        raise OutputPathError(f"{option} {path}: expected a file ending in "
                              f"{' or '.join(suffixes)}, got {path.suffix or 'no extension'!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{option} {path}: the file exists and is read-only")
    _check_can_create_in(path, option)
    return path


def folder_is_ours(folder: Path) -> bool:
    return (folder / OUTPUT_MARKER).is_file()


def check_output_folder(folder: str | Path, *, option: str = "--out", overwrite: bool = False) -> Path:
    """Raise ``OutputPathError`` unless a model can be saved in ``folder``: it is new, empty, our
    own earlier output, or ``overwrite`` is given; it is not a file; it can be written. Creates
    nothing."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{option} {folder}: is a file, not a folder")
    if folder.is_dir():
        present = sorted(p.name for p in folder.iterdir())
        if present and not folder_is_ours(folder) and not overwrite:
            shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
            raise OutputPathError(
                f"{option} {folder}: the folder holds files goldenlayers did not write ({shown}); "
                f"choose a new or empty folder, or pass --overwrite (files of other names are kept)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputPathError(f"{option} {folder}: cannot write in it: permission denied")
        return folder
    _check_can_create_in(folder, option)
    return folder


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """A fresh folder beside ``folder`` to write into; on a normal exit its files move into
    ``folder`` (a new folder is renamed into place in one step). Files a previous goldenlayers
    output recorded in ``OUTPUT_MARKER`` and that the new output lacks are removed; no other file
    is ever removed. The marker is written last."""
    folder = Path(folder).expanduser()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield staging
        written = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        if not folder.exists():
            _write_marker(staging, written)
            os.chmod(staging, 0o777 & ~_umask())
            os.replace(staging, folder)
        else:
            _move_into(staging, folder, written)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(staging: Path, folder: Path, written: list[str]) -> None:
    previous = _read_marker(folder)
    for name in sorted(set(previous) - set(written)):
        target = folder / name
        if target.is_file():
            target.unlink()  # ours: an earlier output recorded it
    for name in written:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    foreign = [p.name for p in folder.iterdir() if p.name not in {*written, OUTPUT_MARKER}
               and p.name not in previous]
    if foreign:
        log.warning("%s also holds files goldenlayers did not write, left as they were: %s",
                    folder, ", ".join(sorted(foreign)[:5]))
    _write_marker(folder, written)


def _read_marker(folder: Path) -> list[str]:
    try:
        files = json.loads((folder / OUTPUT_MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    names = [name for name in files if isinstance(name, str)]
    # Never follow a marker out of its folder.
    return [name for name in names if ".." not in Path(name).parts and not Path(name).is_absolute()]


def _write_marker(folder: Path, files: list[str]) -> None:
    atomic_write_json(folder / OUTPUT_MARKER, {"written_by": "goldenlayers", "files": files})


# --- one writer per run folder --------------------------------------------------------------------


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (made if missing) for the body. A second holder, in
    this process or another, gets ``RunLocked`` naming the folder and the pid that holds it. The
    lock goes with the process, so a killed run never leaves a stale one."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise RunLocked(f"{run_dir} is in use by another run (pid {holder}); wait for it to "
                        f"finish, or choose another --out") from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.ftruncate(descriptor, 0)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


# --- digests of what a run was made from ---------------------------------------------------------


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_digest(settings: Any) -> str:
    """SHA-256 of a JSON-able value, independent of key order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def check_unchanged(recorded: Mapping[str, str], current: Mapping[str, str], *,
                    where: str | Path, what: str = "data file") -> None:
    """Raise ``InputChanged`` when a digest in ``current`` differs from the one ``recorded`` for
    the same name (names present on one side only count as changed too). ``where``: the run."""
    changed = sorted(name for name in {*recorded, *current} if recorded.get(name) != current.get(name))
    if not changed:
        return
    details = []
    for name in changed:
        if name not in recorded:
            details.append(f"{name} (not in the run)")
        elif name not in current:
            details.append(f"{name} (the run has it, this one does not)")
        else:
            details.append(f"{name} (digest {recorded[name][:12]} then, {current[name][:12]} now)")
    raise InputChanged(f"{where}: the {what}{'s' if len(changed) > 1 else ''} changed since the run "
                       f"started: {'; '.join(details)}. Restore them, or use a new --out")


# --- results files that say when they are broken -------------------------------------------------


def read_json(path: str | Path, what: str = "file") -> Any:
    """A JSON file's value; ``CorruptFile`` naming the file when it is unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFile(f"{path}: not a valid {what} ({error}); move it away or rerun to "
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
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
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


# --- cache entries that may be damaged ------------------------------------------------------------


def safetensors_problem(path: str | Path) -> str | None:
    """Why a safetensors file is damaged (a header that does not parse, a size that is not the one
    its header says: truncated or padded), or None when it looks whole. Reads only the header."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                return f"{path.name} is {size} bytes, too short for a safetensors header"
            length = int.from_bytes(prefix, "little")
            if length > size - 8:
                return f"{path.name}: its header claims {length:,} bytes, the file has {size:,}"
            header = json.loads(file.read(length))
        ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        return f"{path.name}: unreadable header ({error})"
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"{path.name} is {size:,} bytes, its header says {expected:,} (truncated?)"
    return None
