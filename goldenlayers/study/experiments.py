"""Running a study: plan the units, skip those already in the store, do the rest, commit each.

Per data set, on a seeded proxy/test split:
1. LGA and CMA on the proxy requests (one unit each, run in this process, timed);
2. brute force on the proxy requests: each request edited alone at each study layer;
3. brute force on the test requests at each study layer plus the LGA and CMA layers, so that "the
   test set edited at the LGA / CMA / golden layer" is read from the same matrix, never redone.
Everything the report shows is computed from the store afterwards (``study.analysis``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from goldenlayers.data.records import EditRequest
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import DEFAULT_METRICS
from goldenlayers.models import ModelHandle, load_model
from goldenlayers.study.executor import EditTask, WorkerSpec, make_executor, seed_everything
from goldenlayers.study.settings import LOCATORS, StudySettings
from goldenlayers.study.store import ResultsStore
from goldenlayers.study.units import EditUnit, LocateRecord, LocateUnit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetPlan:
    """One data set's requests for the study, and the metrics it supports."""

    name: str
    metrics: tuple[str, ...]
    proxy: tuple[EditRequest, ...]
    test: tuple[EditRequest, ...]


@dataclass(frozen=True)
class StudyRun:
    """What one invocation of the study did."""

    run_dir: Path
    invocation: int
    planned: int  # units in the whole study
    done_before: int  # already in the store when this invocation started
    done_now: int  # finished by this invocation
    seconds: float


def plan_datasets(settings: StudySettings) -> list[DatasetPlan]:
    """Load each data set and take the study's share of its seeded proxy/test split."""
    from goldenlayers.data import load_dataset, split

    plans = []
    for name in settings.datasets:
        dataset = load_dataset(name)
        parts = split(dataset.requests, proxy_fraction=settings.proxy_fraction, seed=settings.seed)
        proxy, test = list(parts.proxy)[: settings.proxy_size], list(parts.test)[: settings.test_size]
        if not proxy or not test:
            raise GoldenLayersError(f"data set {name!r} gives {len(proxy)} proxy and {len(test)} test "
                                    f"requests at proxy fraction {settings.proxy_fraction}; need both")
        wanted = DEFAULT_METRICS if settings.metrics is None else settings.metrics
        metrics = tuple(m for m in dataset.metrics if m in wanted)
        plans.append(DatasetPlan(name, metrics, tuple(proxy), tuple(test)))
    return plans


def unit_seed(seed: int, key: str) -> int:
    """A seed for one unit that depends only on the study seed and the unit, not on run order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "little")


def locator_settings(settings: StudySettings, method: str) -> dict[str, object]:
    return dict(settings.lga_settings if method == "lga" else settings.cma_settings)


def run_locators(handle: ModelHandle, plans: Sequence[DatasetPlan], settings: StudySettings,
                 store: ResultsStore, invocation: int) -> dict[tuple[str, str], LocateRecord]:
    """LGA and CMA on each data set's proxy requests: from the store, or run and committed now."""
    from goldenlayers.locate import get_locator

    located = {}
    for plan in plans:
        for method in LOCATORS:
            unit = LocateUnit(plan.name, method, "proxy")
            record = store.locate_record(unit)
            if record is None:
                log.info("locating on %s proxy with %s", plan.name, method)
                seed_everything(unit_seed(settings.seed, unit.key))
                scores = get_locator(method, **locator_settings(settings, method)).locate(
                    handle, list(plan.proxy))
                record = LocateRecord.from_layer_scores(unit, scores)
                store.put(record, invocation)
            located[(plan.name, method)] = record
    return located


def edit_tasks(plans: Sequence[DatasetPlan], settings: StudySettings, layers: Sequence[int],
               located: dict[tuple[str, str], LocateRecord]) -> list[EditTask]:
    """Every (request, layer) unit of the study, proxy then test, request by request."""
    tasks = []
    for plan in plans:
        chosen = {located[(plan.name, method)].golden_layer for method in LOCATORS}
        for split_name, requests, split_layers in (("proxy", plan.proxy, sorted(layers)),
                                                   ("test", plan.test, sorted(set(layers) | chosen))):
            for request in requests:
                for layer in split_layers:
                    unit = EditUnit(plan.name, split_name, request.case_id, layer, settings.editor)
                    tasks.append(EditTask(unit, request, plan.metrics,
                                          unit_seed(settings.seed, unit.key)))
    return tasks


def run_study(settings: StudySettings, run_dir: str | Path, *, executor: str = "local",
              device: str = "cpu", workers: int | None = None, ray_address: str | None = None,
              num_cpus: int | None = None) -> StudyRun:
    """Run (or resume) the study in ``run_dir``; a directory made with other settings is refused."""
    start = time.perf_counter()
    handle = load_model(settings.model, device=device, dtype=settings.dtype)
    store = ResultsStore.open(run_dir, settings.stored(handle.num_layers, handle.fingerprint))
    try:
        invocation = store.begin_invocation(executor)
        done_before = store.count()
        plans = plan_datasets(settings)
        located = run_locators(handle, plans, settings, store, invocation)
        tasks = edit_tasks(plans, settings, settings.resolve_layers(handle.num_layers), located)
        store.set_planned(invocation, len(located) + len(tasks))
        done = store.done_keys()
        todo = [task for task in tasks if task.unit.key not in done]
        log.info("%d of %d edit units to do", len(todo), len(tasks))
        if todo:
            spec = WorkerSpec(settings.model, settings.dtype, device, settings.editor,
                              dict(settings.editor_overrides))
            runner = make_executor(executor, spec, handle, workers=workers, address=ray_address,
                                   num_cpus=num_cpus)
            try:
                runner.run(todo, lambda record: store.put(record, invocation))
            finally:
                runner.close()
        return StudyRun(Path(run_dir), invocation, len(located) + len(tasks), done_before,
                        store.units_done_by(invocation), time.perf_counter() - start)
    finally:
        store.close()
