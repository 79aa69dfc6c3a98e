"""One writer per run folder: an flock on ``RUN/.lock`` that goes with the process, so a killed
run never leaves a stale lock."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goldenlayers.errors import GoldenLayersError

LOCK_NAME = ".lock"


class RunLocked(GoldenLayersError):
    """Another process is writing the same run folder."""


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (made if missing) for the body. A second holder, in
    this process or another, gets ``RunLocked`` naming the folder and the pid that holds it.
    When the body fails, the lock file and the folder are removed if this call made them and
    nothing else was written there: a refused run leaves nothing behind."""
    run_dir = Path(run_dir)
    made_folder = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    made_lock = not path.exists()
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
    except BaseException:
        if made_lock:
            path.unlink(missing_ok=True)  # still ours: the flock is held until below
            if made_folder and not any(run_dir.iterdir()):
                run_dir.rmdir()
        raise
    finally:
        os.ftruncate(descriptor, 0)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)
