"""Running cells: in this process (``local``) or on Ray actors (``ray``).

A ``CellWorker`` holds one loaded model and editor and runs cells (``engine.CellRunner``); a cell's
row depends only on its key, so neither the order of the cells nor the executor changes it. The
driver appends every row to the results file the moment it arrives.

Work is handed out in batches of one layer's cells of a few requests (``cell_batches``): the worker
optimises their values together (one forward and backward per step for all of them), and computes
each request's layer-independent work (pre-edit predictions, templates, token batches) once. Each
Ray actor keeps to one block of requests, layer after layer, so that the unedited passes over it
are made once, not once per actor (``RayExecutor``). On
CPUs, one worker per core with one thread each beats one worker with many threads on small models;
on a GPU, one worker per GPU with more requests per batch.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.engine import CellKey, CellRow, CellRunner, layer_batches, request_blocks
from goldenlayers.errors import GoldenLayersError
from goldenlayers.models import ModelHandle, load_model
from goldenlayers.progress import track

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
OnRow = Callable[[CellRow], None]


@dataclass(frozen=True)
class CellTask:
    """One cell with the request it edits."""

    key: CellKey
    request: EditRequest


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker loads its model and editor (sent to Ray actors, so plain values only)."""

    model: str
    dtype: str = "float32"
    device: str = "cpu"
    editor: str = "r-rome"
    editor_overrides: dict[str, object] = field(default_factory=dict)
    metrics: tuple[str, ...] | None = None
    fluency_requests: frozenset[str] = frozenset()
    threads: int | None = None  # torch intra-op threads; None: torch's default


class CellWorker:
    """Runs cells on its own loaded model (or the driver's ``handle``)."""

    def __init__(self, spec: WorkerSpec, handle: ModelHandle | None = None):
        from goldenlayers.editing import fluency_procedure, get_editor

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        handle = handle if handle is not None else load_model(spec.model, spec.device, spec.dtype)
        editor = get_editor(spec.editor, **spec.editor_overrides)  # its profile, if any, too
        self.runner = CellRunner(handle, editor, spec.metrics, spec.fluency_requests,
                                 fluency_procedure(editor.profile))

    def run(self, tasks: Sequence[CellTask]) -> list[CellRow]:
        return self.runner.run_batch([(task.key, task.request) for task in tasks])


def cell_batches(tasks: Sequence[CellTask], requests_per_batch: int = 4) -> list[list[CellTask]]:
    """The tasks in the engine's batches (``engine.layer_batches``)."""
    return [[tasks[i] for i in batch]
            for batch in layer_batches([task.key for task in tasks], requests_per_batch)]


def cell_blocks(tasks: Sequence[CellTask],
                requests_per_batch: int = 4) -> list[list[list[CellTask]]]:
    """The batches of ``cell_batches`` by block of requests (``engine.request_blocks``)."""
    return [[[tasks[i] for i in batch] for batch in block]
            for block in request_blocks([task.key for task in tasks], requests_per_batch)]


class BlockQueue:
    """Hands out batches so that each worker keeps to one block of requests, layer after layer:
    its own block's next batch; else the next block nobody has started; else, near the end, the
    upper half of the layers left in the largest block another worker holds (taken off it, so
    no batch runs twice and no worker idles while another has several batches left)."""

    def __init__(self, blocks: Sequence[Sequence[list[CellTask]]]):
        self._fresh = deque(deque(block) for block in blocks if block)
        self._held: dict[int, deque[list[CellTask]]] = {}

    def next_for(self, worker: int) -> list[CellTask] | None:
        own = self._held.get(worker)
        if not own:
            own = self._fresh.popleft() if self._fresh else self._split_largest()
            if own is None:
                self._held.pop(worker, None)
                return None
            self._held[worker] = own
        return own.popleft()

    def _split_largest(self) -> deque[list[CellTask]] | None:
        largest = max(self._held.values(), key=len, default=None)
        if not largest:
            return None
        taken = [largest.pop() for _ in range(max(1, len(largest) // 2))]
        return deque(reversed(taken))


class LocalExecutor:
    """Runs the cells one after another in this process."""

    name = "local"

    def __init__(self, worker: CellWorker, requests_per_batch: int = 4):
        self.worker = worker
        self.requests_per_batch = requests_per_batch

    def run(self, tasks: Sequence[CellTask], on_row: OnRow) -> None:
        rows = (row for batch in cell_batches(tasks, self.requests_per_batch)
                for row in self.worker.run(batch))
        for row in track(rows, f"brute force ({self.worker.spec.editor}, request x layer)",
                         total=len(tasks)):
            on_row(row)

    def close(self) -> None:
        pass


class RayExecutor:
    """Runs a few cells of one request at a time on each of several Ray actors, which load the
    model once.

    ``address``: an existing cluster ("auto" or "ray://..."); None starts a local one with
    ``num_cpus`` CPUs. Each actor takes ``cpus_per_worker`` CPUs and as many torch threads, and,
    where the cluster has GPUs, an equal share of them (at most one each), running on "cuda".
    """

    name = "ray"

    def __init__(self, spec: WorkerSpec, *, workers: int | None = None, address: str | None = None,
                 num_cpus: int | None = None, cpus_per_worker: float = 1.0,
                 requests_per_batch: int = 4):
        import ray

        self._ray = ray
        self.requests_per_batch = requests_per_batch
        self._started_here = not ray.is_initialized()
        if self._started_here:
            if address is None:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                         log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
        self.workers = workers or max(1, int(gpus) if gpus else int(cpus // cpus_per_worker))
        self.gpus_per_worker = min(1.0, gpus / self.workers) if gpus else 0.0
        self.cpus_per_worker = cpus_per_worker
        device = "cuda" if gpus else spec.device
        self.spec = WorkerSpec(spec.model, spec.dtype, device, spec.editor,
                               dict(spec.editor_overrides), spec.metrics, spec.fluency_requests,
                               max(1, int(cpus_per_worker)))
        log.info("ray: %d workers, %.2f CPU and %.2f GPU each", self.workers, cpus_per_worker,
                 self.gpus_per_worker)

    def run(self, tasks: Sequence[CellTask], on_row: OnRow) -> None:
        if not tasks:
            return
        for row in track(self._rows(tasks), f"brute force on ray ({self.workers} workers)",
                         total=len(tasks)):
            on_row(row)

    def _rows(self, tasks: Sequence[CellTask]) -> Iterator[CellRow]:
        ray = self._ray
        blocks = cell_blocks(tasks, self.requests_per_batch)
        queue = BlockQueue(blocks)
        actor_class = ray.remote(num_cpus=self.cpus_per_worker,
                                 num_gpus=self.gpus_per_worker)(CellWorker)
        batches = sum(len(block) for block in blocks)
        actors = [actor_class.remote(self.spec) for _ in range(min(self.workers, batches))]
        pending = {}
        for worker, actor in enumerate(actors):
            batch = queue.next_for(worker)
            if batch is not None:
                pending[actor.run.remote(batch)] = worker
        try:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                worker = pending.pop(done)
                batch = queue.next_for(worker)
                if batch is not None:
                    pending[actors[worker].run.remote(batch)] = worker
                yield from ray.get(done)
        finally:
            for actor in actors:
                ray.kill(actor)

    def close(self) -> None:
        if self._started_here:
            self._ray.shutdown()


def make_executor(name: str, spec: WorkerSpec, handle: ModelHandle | None = None, *,
                  workers: int | None = None, address: str | None = None,
                  num_cpus: int | None = None,
                  requests_per_batch: int = 4) -> LocalExecutor | RayExecutor:
    """``local`` reuses ``handle`` (the driver's model); ``ray`` starts actors that load their own.
    ``requests_per_batch``: see ``cell_batches``."""
    if name == "local":
        return LocalExecutor(CellWorker(spec, handle), requests_per_batch)
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise GoldenLayersError("--executor ray needs Ray: pip install 'goldenlayers[ray]'") from None
        return RayExecutor(spec, workers=workers, address=address, num_cpus=num_cpus,
                           requests_per_batch=requests_per_batch)
    raise GoldenLayersError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
