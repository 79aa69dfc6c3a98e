"""``run_cells``'s ``ray`` executor: batches of cells on Ray actors that load the model once.

Each actor keeps to one block of requests, layer after layer, so that the unedited passes over it
are made once, not once per actor (``BlockQueue``). On CPUs, one actor per core with one thread
each beats one process with many threads on small models; on a GPU, one actor per GPU with more
requests per batch.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from goldenlayers.engine.cell import CellRow, CellRunner
from goldenlayers.engine.run import Cell
from goldenlayers.errors import GoldenLayersError

log = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
    except ImportError:
        raise GoldenLayersError("--executor ray needs Ray: pip install 'goldenlayers[ray]'") from None
    return ray


@dataclass(frozen=True)
class WorkerSpec:
    """How an actor loads a runner equal to the driver's (plain values: it is sent to Ray)."""

    model: str  # what load_model loads
    model_fingerprint: str  # the driver's model's: an actor whose model differs refuses to run
    dtype: str
    device: str
    editor: str
    editor_overrides: dict[str, object] = field(default_factory=dict)
    metrics: tuple[str, ...] | None = None
    fluency_requests: frozenset[str] = frozenset()
    fluency_procedure: str = "greedy"
    threads: int | None = None  # torch intra-op threads; None: torch's default

    @classmethod
    def of(cls, runner: CellRunner, device: str | None = None,
           threads: int | None = None) -> WorkerSpec:
        handle = runner.handle
        dtype = str(next(handle.model.parameters()).dtype).removeprefix("torch.")
        return cls(handle.name, handle.fingerprint, dtype, device or str(handle.device),
                   runner.editor.name, dict(runner.editor.overrides), runner.metrics,
                   runner.fluency_requests, runner.fluency_procedure, threads)

    def load(self) -> CellRunner:
        from goldenlayers.editing import get_editor
        from goldenlayers.models import load_model

        if self.threads:
            torch.set_num_threads(self.threads)
        handle = load_model(self.model, self.device, self.dtype)
        if handle.fingerprint != self.model_fingerprint:
            raise GoldenLayersError(f"a Ray worker loaded {self.model!r} with fingerprint "
                                    f"{handle.fingerprint}, not the driver's "
                                    f"{self.model_fingerprint}")
        return CellRunner(handle, get_editor(self.editor, **self.editor_overrides), self.metrics,
                          self.fluency_requests, self.fluency_procedure)


class CellActor:
    """One Ray actor: its own runner, loaded once."""

    def __init__(self, spec: WorkerSpec):
        self.runner = spec.load()

    def run(self, cells: Sequence[Cell]) -> list[CellRow]:
        return self.runner.run_batch(cells)


class BlockQueue:
    """Hands out batches so that each worker keeps to one block of requests, layer after layer:
    its own block's next batch; else the next block nobody has started; else, near the end, the
    upper half of the layers left in the largest block another worker holds (taken off it, so
    no batch runs twice and no worker idles while another has several batches left)."""

    def __init__(self, blocks: Sequence[Sequence[list[int]]]):
        self._fresh = deque(deque(block) for block in blocks if block)
        self._held: dict[int, deque[list[int]]] = {}

    def next_for(self, worker: int) -> list[int] | None:
        own = self._held.get(worker)
        if not own:
            own = self._fresh.popleft() if self._fresh else self._split_largest()
            if own is None:
                self._held.pop(worker, None)
                return None
            self._held[worker] = own
        return own.popleft()

    def _split_largest(self) -> deque[list[int]] | None:
        largest = max(self._held.values(), key=len, default=None)
        if not largest:
            return None
        taken = [largest.pop() for _ in range(max(1, len(largest) // 2))]
        return deque(reversed(taken))


def ray_rows(spec: WorkerSpec, cells: Sequence[Cell], blocks: list[list[list[int]]], *,
             workers: int | None = None, ray_address: str | None = None,
             num_cpus: int | None = None, cpus_per_worker: float = 1.0
             ) -> Iterator[tuple[list[int], list[CellRow]]]:
    """(a batch's positions in ``cells``, its rows) as the actors finish them.

    ``ray_address``: an existing cluster ("auto" or "ray://..."); None starts a local one with
    ``num_cpus`` CPUs (default: every core), shut down at the end. Each actor takes
    ``cpus_per_worker`` CPUs and as many torch threads, and, where the cluster has GPUs, an equal
    share of them (at most one each), running on "cuda". ``workers``: default one per GPU, else
    one per ``cpus_per_worker`` CPUs."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address, num_cpus=None if ray_address else num_cpus or os.cpu_count(),
                 include_dashboard=False, log_to_driver=False)
    actors = []
    try:
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
        workers = workers or max(1, int(gpus) if gpus else int(cpus // cpus_per_worker))
        gpus_per_worker = min(1.0, gpus / workers) if gpus else 0.0
        log.info("ray: %d workers, %.2f CPU and %.2f GPU each", workers, cpus_per_worker,
                 gpus_per_worker)
        spec = replace(spec, device="cuda" if gpus else spec.device,
                       threads=max(1, int(cpus_per_worker)))
        actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(CellActor)
        queue = BlockQueue(blocks)
        actors = [actor_class.remote(spec)
                  for _ in range(min(workers, sum(len(block) for block in blocks)))]
        pending = {}

        def hand_out(worker: int) -> None:
            batch = queue.next_for(worker)
            if batch is not None:
                pending[actors[worker].run.remote([cells[i] for i in batch])] = (worker, batch)

        for worker in range(len(actors)):
            hand_out(worker)
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            worker, batch = pending.pop(done)
            hand_out(worker)
            yield batch, ray.get(done)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
