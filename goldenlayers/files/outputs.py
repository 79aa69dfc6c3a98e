"""Outputs: checked before the work, and never over what the user owns.

One rule for every output, a folder (``--out``) or a single file (``--json``, ``--plot``,
``--patch``, a report's files): a new path is written; our own earlier output is replaced; anything
else is refused unless ``--overwrite`` is given; a path that is also an input of the same command is
always refused. "Our own": a folder holds ``OUTPUT_MARKER``, written by ``staged_folder``; a file's
folder holds ``FILES_MARKER`` recording the file's digest as we wrote it (a file changed since is
the user's). Every check runs before the work and creates nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from goldenlayers.errors import GoldenLayersError
from goldenlayers.files.atomic import (atomic_path, atomic_write_json, named_write_errors,
                                       remove_stale, staging_prefix, umask)
from goldenlayers.files.digests import file_digest

log = logging.getLogger(__name__)

OUTPUT_MARKER = ".goldenlayers-output.json"  # in a folder we wrote: the files we wrote there
FILES_MARKER = ".goldenlayers-files.json"  # beside single files we wrote: name -> digest


class OutputPathError(GoldenLayersError):
    """An output path cannot be written (or must not be); names the option and the path."""


# --- which paths are ours -------------------------------------------------------------------------


def folder_is_ours(folder: Path) -> bool:
    return (Path(folder) / OUTPUT_MARKER).is_file()


def _recorded_files(folder: Path) -> dict[str, str]:
    try:
        files = json.loads((folder / FILES_MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return {}
    if not isinstance(files, dict):
        return {}
    return {name: digest for name, digest in files.items()
            if isinstance(digest, str) and "/" not in name and name not in ("", ".", "..")}


def file_is_ours(path: str | Path) -> bool:
    """``path`` is a file goldenlayers wrote (``record_output``) and nobody has changed since."""
    path = Path(path)
    recorded = _recorded_files(path.parent).get(path.name)
    return recorded is not None and path.is_file() and file_digest(path) == recorded


def record_output(path: str | Path) -> Path:
    """Note ``path`` (just written) as our own output, by its digest, in its folder's marker."""
    path = Path(path)
    files = _recorded_files(path.parent)
    files = {name: digest for name, digest in files.items() if (path.parent / name).is_file()}
    files[path.name] = file_digest(path)
    atomic_write_json(path.parent / FILES_MARKER, {"written_by": "goldenlayers", "files": files})
    return path


@contextmanager
def output_path(path: str | Path) -> Iterator[Path]:
    """``atomic_path`` for an output: the file is recorded as ours once it is in place."""
    with atomic_path(path) as staging:
        yield staging
    record_output(path)


def write_output_bytes(path: str | Path, data: bytes) -> Path:
    with named_write_errors(path), output_path(path) as staging:
        staging.write_bytes(data)
    return Path(path)


def write_output_text(path: str | Path, text: str) -> Path:
    return write_output_bytes(path, text.encode("utf-8"))


def write_output_json(path: str | Path, value) -> Path:
    return write_output_text(path, json.dumps(value, indent=2, default=str) + "\n")


# --- checks before the work -----------------------------------------------------------------------


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


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(path: str | Path, inputs: Iterable[tuple[str, str | Path | None]], *,
                    option: str) -> None:
    """Refuse an output ``path`` that is one of the command's ``inputs`` ((option, path) pairs)."""
    path = Path(path).expanduser()
    for input_option, value in inputs:
        if value is None:
            continue
        given = Path(value).expanduser()
        if _same_path(path, given) or path.resolve() == given.resolve():
            raise OutputPathError(f"{option} {path}: is also the input {input_option} {value}; "
                                  f"write the output to another path")


def check_output_path(path: str | Path, *, option: str = "--out", suffixes: tuple[str, ...] = (),
                      overwrite: bool = False,
                      inputs: Iterable[tuple[str, str | Path | None]] = ()) -> Path:
    """Raise ``OutputPathError`` naming ``option`` unless a file may be written at ``path``: the
    right extension (one of ``suffixes``, case-insensitive, when given), not a folder, not an
    input, new or our own earlier output (or ``overwrite``), its parent a folder that exists or
    can be made, writable. Creates nothing."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder; give a file name")
    if suffixes and path.suffix.lower() not in {s.lower() for s in suffixes}:
        raise OutputPathError(f"{option} {path}: expected a file ending in "
                              f"{' or '.join(suffixes)}, got {path.suffix or 'no extension'!r}")
    check_not_input(path, inputs, option=option)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{option} {path}: the file exists and is read-only")
    if path.exists() and not overwrite and not file_is_ours(path):
        raise OutputPathError(f"{option} {path}: the file exists and goldenlayers did not write it "
                              f"(or it was changed since); choose a new name, or pass --overwrite")
    _check_can_create_in(path, option)
    return path


def check_output_folder(folder: str | Path, *, option: str = "--out", overwrite: bool = False,
                        inputs: Iterable[tuple[str, str | Path | None]] = ()) -> Path:
    """Raise ``OutputPathError`` unless a model can be saved in ``folder``: it is new, empty, our
    own earlier output, or ``overwrite`` is given; it is not a file nor an input; it can be
    written. Creates nothing."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{option} {folder}: is a file, not a folder")
    check_not_input(folder, inputs, option=option)
    if folder.is_dir():
        present = sorted(p.name for p in folder.iterdir())
        if present and not folder_is_ours(folder) and not overwrite:
            raise OutputPathError(
                f"{option} {folder}: the folder holds files goldenlayers did not write "
                f"({shown_names(present)}); choose a new or empty folder, or pass --overwrite "
                f"(files of other names are kept)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputPathError(f"{option} {folder}: cannot write in it: permission denied")
        return folder
    _check_can_create_in(folder, option)
    return folder


def shown_names(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


# --- model folders --------------------------------------------------------------------------------


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """A fresh folder beside ``folder`` to write into; on a normal exit its files move into
    ``folder`` (a new folder is renamed into place in one step). Files a previous goldenlayers
    output recorded in ``OUTPUT_MARKER`` and that the new output lacks are removed; no other file
    is ever removed. The marker is written last. A staging folder a killed save left is removed."""
    folder = Path(folder).expanduser()
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(folder), suffix=".tmp",
                                    dir=folder.parent))
    try:
        yield staging
        written = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        if not folder.exists():
            _write_marker(staging, written)
            os.chmod(staging, 0o777 & ~umask())
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
    ours = {*written, *previous, OUTPUT_MARKER, FILES_MARKER, *_recorded_files(folder)}
    foreign = [p.name for p in folder.iterdir() if p.name not in ours]
    if foreign:
        log.warning("%s also holds files goldenlayers did not write, left as they were: %s",
                    folder, ", ".join(sorted(foreign)[:5]))
    _write_marker(folder, written)


def _read_marker(folder: Path) -> list[str]:
    try:
        files = json.loads((folder / OUTPUT_MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return []
    names = [name for name in files if isinstance(name, str)]
    # Never follow a marker out of its folder.
    return [name for name in names if ".." not in Path(name).parts and not Path(name).is_absolute()]


def _write_marker(folder: Path, files: list[str]) -> None:
    atomic_write_json(folder / OUTPUT_MARKER, {"written_by": "goldenlayers", "files": files})
