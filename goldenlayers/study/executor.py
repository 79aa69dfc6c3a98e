"""Running edit units: in this process (``local``) or on Ray actors (``ray``).

Brute force is layers x requests independent edits. An ``EditWorker`` holds one loaded model and
edits one request at one layer at a time, restoring the weights exactly after each; its results
depend only on the task (each task reseeds the random generators from its own seed), so the order
of the tasks and the executor do not change them. The driver commits every record to the store as
it arrives.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.errors import GoldenLayersError
from goldenlayers.models import ModelHandle, load_model
from goldenlayers.progress import track
from goldenlayers.study.units import EditRecord, EditUnit

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
OnRecord = Callable[[EditRecord], None]


@dataclass(frozen=True)
class EditTask:
    """One unit with everything a worker needs to do it."""

    unit: EditUnit
    request: EditRequest
    metrics: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker loads its model and editor (sent to Ray actors, so plain values only)."""

    model: str
    dtype: str = "float32"
    device: str = "cpu"
    editor: str = "r-rome"
    editor_overrides: dict[str, object] = field(default_factory=dict)


class EditWorker:
    """Edits one request at one layer, evaluates it, restores the weights. Keeps its model loaded."""

    def __init__(self, spec: WorkerSpec, handle: ModelHandle | None = None):
        from goldenlayers.editing import get_editor

        self.spec = spec
        self.handle = handle if handle is not None else load_model(spec.model, spec.device, spec.dtype)
        self.editor = get_editor(spec.editor, **spec.editor_overrides)
        self._pre = {}  # dataset -> PreEditState of the requests seen so far (unedited model)

    def run(self, tasks: Sequence[EditTask]) -> list[EditRecord]:
        return [self.run_one(task) for task in tasks]

    def run_one(self, task: EditTask) -> EditRecord:
        from goldenlayers.editing import EditError
        from goldenlayers.evaluate import evaluate

        pre = self._pre_edit(task)
        seed_everything(task.seed)
        start = time.perf_counter()
        try:
            with self.editor.edited(self.handle, [task.request], task.unit.layer):
                edit_seconds = time.perf_counter() - start
                evaluation = evaluate(self.handle, [task.request], pre=pre, metrics=list(task.metrics))
        except EditError as error:  # the edit was not made; the weights are unchanged
            log.warning("%s: %s", task.unit.key, error)
            return EditRecord(task.unit, {}, time.perf_counter() - start, 0.0, error=str(error))
        seconds = time.perf_counter() - start
        values = {name: float(value) for name, value in evaluation.per_request[0].values().items()
                  if value is not None and name in task.metrics}
        return EditRecord(task.unit, values, seconds, edit_seconds)

    def _pre_edit(self, task: EditTask):
        """The unedited model's locality predictions for this request, computed once per request."""
        from goldenlayers.evaluate import compute_pre_edit

        dataset, case_id = task.unit.dataset, task.request.case_id
        known = self._pre.get(dataset)
        if known is None or case_id not in known:
            state = compute_pre_edit(self.handle, [task.request])  # the weights are unedited here
            self._pre[dataset] = state if known is None else known.merged(state)
        return self._pre[dataset]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


class LocalExecutor:
    """Runs the tasks one after another on a worker in this process."""

    name = "local"

    def __init__(self, worker: EditWorker):
        self.worker = worker

    def run(self, tasks: Sequence[EditTask], on_record: OnRecord) -> None:
        for task in track(tasks, "brute force (edit x layer)", total=len(tasks)):
            on_record(self.worker.run_one(task))

    def close(self) -> None:
        pass


class RayExecutor:
    """Runs batches of tasks on Ray actors, each of which loads the model once and keeps it.

    ``address``: an existing cluster ("auto" or "ray://..."); None starts a local one with
    ``num_cpus`` CPUs. Each actor takes ``cpus_per_worker`` CPUs and, where the cluster has GPUs,
    an equal fraction of them (at most one GPU each) and runs on "cuda".
    """

    name = "ray"

    def __init__(self, spec: WorkerSpec, *, workers: int | None = None, address: str | None = None,
                 num_cpus: int | None = None, cpus_per_worker: float = 1.0, batch_size: int = 4):
        import ray

        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            if address is None:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                         log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
        self.workers = workers or max(1, int(cpus // cpus_per_worker))
        self.gpus_per_worker = min(1.0, gpus / self.workers) if gpus else 0.0
        self.spec = _with_device(spec, "cuda" if gpus else spec.device)
        self.cpus_per_worker, self.batch_size = cpus_per_worker, batch_size
        log.info("ray: %d workers, %.2f CPU and %.2f GPU each", self.workers, cpus_per_worker,
                 self.gpus_per_worker)

    def run(self, tasks: Sequence[EditTask], on_record: OnRecord) -> None:
        if not tasks:
            return
        for record in track(self._records(tasks), "brute force on ray", total=len(tasks)):
            on_record(record)

    def _records(self, tasks: Sequence[EditTask]) -> Iterator[EditRecord]:
        ray = self._ray
        batches = [list(tasks[i: i + self.batch_size]) for i in range(0, len(tasks), self.batch_size)]
        actor_class = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker)(EditWorker)
        actors = [actor_class.remote(self.spec) for _ in range(min(self.workers, len(batches)))]
        pending = {actor.run.remote(batches.pop(0)): actor for actor in actors if batches}
        try:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(done)
                if batches:
                    pending[actor.run.remote(batches.pop(0))] = actor
                yield from ray.get(done)
        finally:
            for actor in actors:
                ray.kill(actor)

    def close(self) -> None:
        if self._started_here:
            self._ray.shutdown()


def _with_device(spec: WorkerSpec, device: str) -> WorkerSpec:
    return WorkerSpec(spec.model, spec.dtype, device, spec.editor, dict(spec.editor_overrides))


def make_executor(name: str, spec: WorkerSpec, handle: ModelHandle | None = None, *,
                  workers: int | None = None, address: str | None = None,
                  num_cpus: int | None = None) -> LocalExecutor | RayExecutor:
    """``local`` reuses ``handle`` (the driver's model); ``ray`` starts actors that load their own."""
    if name == "local":
        return LocalExecutor(EditWorker(spec, handle))
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise GoldenLayersError("--executor ray needs Ray: pip install 'goldenlayers[ray]'") from None
        return RayExecutor(spec, workers=workers, address=address, num_cpus=num_cpus)
    raise GoldenLayersError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
