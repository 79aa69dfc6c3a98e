"""Running many cells: the one pipeline behind brute force, ``locate --verify``, the study and
a locator's trial edits.

``run_cells`` takes (key, request) cells in any order and gives their rows back in that order.
In between it orders the requests by the columns their value optimisation recomputes
(``editing.batches.ordered_for_batching``: a stacked batch recomputes its widest request's columns
for every row), cuts the cells into batches of one layer's cells of a few requests
(``layer_batches``, grouped by block of requests: ``request_blocks``), and runs each batch with
``CellRunner.run_batch``: here, on the runner's model (``local``), or on Ray actors that each load
the same model and editor (``ray``, engine/ray_workers.py). A cell's row depends only on its key
(up to float rounding in its batch), so neither the order nor the executor changes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.batches import ordered_for_batching
from goldenlayers.engine.cell import CellKey, CellRow, CellRunner, request_blocks
from goldenlayers.errors import GoldenLayersError
from goldenlayers.progress import track

EXECUTORS = ("local", "ray")
Cell = tuple[CellKey, EditRequest]
OnRow = Callable[[CellRow], None]


def run_cells(cells: Sequence[Cell], runner: CellRunner, *, executor: str = "local",
              workers: int | None = None, requests_per_batch: int = 4,
              order_window: int | None = None, on_row: OnRow | None = None,
              ray_address: str | None = None, num_cpus: int | None = None,
              label: str = "cells") -> list[CellRow]:
    """Every cell's row, in the order of ``cells``.

    ``runner``: the driver's; its model's tokenizer orders the cells, ``local`` runs them on it,
    and ``ray`` actors load its model (``handle.name``, on "cuda" where the cluster has GPUs, else
    on the runner's device) and editor. ``workers``, ``ray_address``, ``num_cpus``: the Ray
    actors and cluster (``ray_workers.ray_rows``). ``requests_per_batch``: requests whose values
    are optimised together. ``order_window``: order the requests by width only within
    consecutive windows of this many requests of a (data set, split), so that a stopped run has
    done nearly a prefix of the given order (None: the whole set). ``on_row``: called with each
    row as it arrives (in running order), e.g. to append it to a results file."""
    check_executor(executor)
    if requests_per_batch < 1:
        raise GoldenLayersError(f"requests per batch must be at least 1, not {requests_per_batch}")
    cells = list(cells)
    if not cells:
        return []
    order = batching_order(cells, runner.handle.tokenizer, order_window)
    ordered = [cells[i] for i in order]
    # the key statistics of every layer, in one pass, before any worker needs them
    runner.editor.precompute_statistics(runner.handle, sorted({key.layer for key, _ in cells}))
    blocks = request_blocks([key for key, _ in ordered], requests_per_batch)
    rows: list[CellRow | None] = [None] * len(cells)
    with contextlib.closing(_batch_rows(executor, runner, ordered, blocks, workers=workers,
                                        ray_address=ray_address, num_cpus=num_cpus)) as done:
        positioned = ((position, row) for batch, batch_rows in done
                      for position, row in zip(batch, batch_rows))
        for position, row in track(positioned, label, total=len(cells)):
            if on_row is not None:
                on_row(row)
            rows[order[position]] = row
    return rows  # type: ignore[return-value]  # every cell is in exactly one batch


def check_executor(name: str) -> None:
    """Refuse an unknown executor, or ``ray`` where Ray is not installed, before any work."""
    if name not in EXECUTORS:
        raise GoldenLayersError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if name == "ray":
        from goldenlayers.engine.ray_workers import import_ray
        import_ray()


def _batch_rows(executor: str, runner: CellRunner, cells: Sequence[Cell],
                blocks: list[list[list[int]]], **ray_options
                ) -> Iterator[tuple[list[int], list[CellRow]]]:
    """(a batch's positions in ``cells``, its rows), batch after batch as they finish."""
    if executor == "ray":
        from goldenlayers.engine.ray_workers import WorkerSpec, ray_rows
        yield from ray_rows(WorkerSpec.of(runner), cells, blocks, **ray_options)
        return
    for block in blocks:  # block by block, layer by layer: the order that shares unedited passes
        for batch in block:
            yield batch, runner.run_batch([cells[i] for i in batch])


def batching_order(cells: Sequence[Cell], tokenizer, window: int | None = None) -> list[int]:
    """Positions of ``cells`` in running order: (data set, split) groups as they first appear;
    in each, its requests by the columns their values recompute (``ordered_for_batching``,
    within windows of ``window`` requests); each request's cells in their given order."""
    groups: dict[tuple[str, str], dict[str, list[int]]] = {}
    for position, (key, _) in enumerate(cells):
        groups.setdefault((key.dataset, key.split), {}).setdefault(key.case_id, []).append(position)
    order: list[int] = []
    for by_case in groups.values():
        requests = [cells[positions[0]][1] for positions in by_case.values()]
        for request in ordered_for_batching(requests, tokenizer, window):
            order += by_case[str(request.case_id)]
    return order
