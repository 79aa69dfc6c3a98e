"""Progress bars for long work (covariance statistics, brute force, studies), via rich.

One function so every loop looks the same and can be silenced: set GOLDENLAYERS_PROGRESS=0
(tests and CI logs) or pass ``enabled=False``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("GOLDENLAYERS_PROGRESS", "1") != "0"


def track(items: Iterable[T], description: str, total: int | None = None,
          enabled: bool | None = None) -> Iterator[T]:
    """Yield ``items`` while showing a bar with count, elapsed time and ETA."""
    if enabled is None:
        enabled = progress_enabled()
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
