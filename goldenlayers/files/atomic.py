"""Atomic writes: a temporary file in the same folder, flushed to disk, then renamed over the
target, so a reader sees the old file or the new one, never half of one.

A temporary's name carries the writer's pid (``.NAME.PID.XXXX.tmp``), so that the next write of
the same target removes the ones a killed writer left (``remove_stale``), never a live one's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goldenlayers.errors import GoldenLayersError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; write it in the body. On a normal exit it is flushed to
    disk and renamed over ``path``; on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    descriptor, staging = tempfile.mkstemp(prefix=staging_prefix(path), suffix=".tmp",
                                           dir=path.parent)
    os.close(descriptor)
    os.chmod(staging, 0o666 & ~umask())  # mkstemp's file is private; a plain write's is not
    try:
        yield Path(staging)
        fsync_file(staging)
        os.replace(staging, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def staging_prefix(path: Path) -> str:
    """The name start of this process's temporaries for ``path``."""
    return f".{path.name}.{os.getpid()}."


def remove_stale(path: Path) -> list[Path]:
    """Remove the temporaries for ``path`` (files or folders) whose writer no longer runs."""
    removed = []
    prefix = f".{path.name}."
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid = entry.name[len(prefix):].split(".", 1)[0]
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp") and pid.isdigit()):
            continue
        if _running(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def umask() -> int:
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


def fsync_file(path: str | Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def fsync_dir(folder: Path) -> None:
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


class WriteFailed(GoldenLayersError):
    """Writing an output failed (no space left, permission, ...); names the path and the reason."""


@contextmanager
def named_write_errors(path: str | Path) -> Iterator[None]:
    """Turn what a writer raises (an ``OSError``, or a library's own error wrapping one, as
    safetensors' ``SafetensorError``) into ``WriteFailed`` naming ``path`` and the reason."""
    try:
        yield
    except GoldenLayersError:
        raise
    except Exception as error:
        text = str(error)
        if isinstance(error, OSError) and error.strerror:
            reason = error.strerror
        elif "StorageFull" in text or "No space left" in text:
            reason = "no space left on the device"
        elif isinstance(error, OSError) or type(error).__name__ == "SafetensorError":
            reason = " ".join(text.split())[:200]
        else:
            raise
        raise WriteFailed(f"{path}: could not write it: {reason}; nothing was changed there") \
            from error
