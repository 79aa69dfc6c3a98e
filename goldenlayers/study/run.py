"""Running a study: plan the cells, skip those already in the run folder, run the rest, append each.

Per data set, on a seeded proxy/test split:
1. each locator the study runs (``locate.study_locators``: LGA, causal tracing) on the proxy
   requests (in this process, timed), stored as locate rows, and LGA's gradient products;
2. brute force: every proxy and test request edited alone at every study layer (``engine``).
Every table is computed from the result files afterwards (``study.analysis``), and a layer that a
locator picks is read from the same grid, never edited again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from goldenlayers.data.records import EditRequest
from goldenlayers.editing import fluency_procedure, get_editor
from goldenlayers.engine import (CellKey, CellRunner, LocateRow, ResultsFolder, check_executor,
                                 run_cells, seed_everything)
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import DEFAULT_METRICS
from goldenlayers.models import ModelHandle, load_model
from goldenlayers.files.locks import run_lock
from goldenlayers.study.lga_readings import PRODUCTS
from goldenlayers.study.settings import StudySettings
from goldenlayers.study.store import FORMAT, merged_manifest, requests_digest, write_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetPlan:
    """One data set's requests for the study, and the metrics it supports."""

    name: str
    metrics: tuple[str, ...]
    proxy: tuple[EditRequest, ...]
    test: tuple[EditRequest, ...]
    pool: tuple[EditRequest, ...]  # LGA only: more proxy-like requests, disjoint from test
    digest: str  # of all the data set's records, in order

    def split(self, name: str) -> tuple[EditRequest, ...]:
        return {"proxy": self.proxy, "test": self.test}[name]


@dataclass(frozen=True)
class StudyRun:
    """What one invocation of the study did."""

    run_dir: Path
    planned: int  # cells of this invocation's data sets and editor
    done_before: int  # already in the folder when this invocation started
    done_now: int
    seconds: float


def plan_datasets(settings: StudySettings) -> list[DatasetPlan]:
    """Load each data set and take the study's share of its seeded proxy/test split."""
    from goldenlayers.data import load_dataset, split

    plans = []
    for name in settings.datasets:
        dataset = load_dataset(name)
        parts = split(dataset.requests, proxy_fraction=settings.proxy_fraction, seed=settings.seed)
        test_end = None if settings.test_size is None else settings.test_size
        proxy = list(parts.proxy)[: settings.proxy_size]
        test = list(parts.test)[:test_end]
        pool = list(parts.test)[len(test): len(test) + settings.pool_size]
        if not proxy or not test:
            raise GoldenLayersError(f"data set {name!r} gives {len(proxy)} proxy and {len(test)} test "
                                    f"requests at proxy fraction {settings.proxy_fraction}; need both")
        wanted = DEFAULT_METRICS if settings.metrics is None else settings.metrics
        metrics = tuple(m for m in dataset.metrics if m in wanted)
        plans.append(DatasetPlan(dataset.name, metrics, tuple(proxy), tuple(test), tuple(pool),
                                 requests_digest(dataset.requests)))
    return plans


def fluency_case_ids(plan: DatasetPlan, size: int, seed: int) -> frozenset[str]:
    """A seeded subsample of ``size`` test requests that also get fluency."""
    ids = sorted(f"{plan.name}/{r.case_id}" for r in plan.test)
    return frozenset(random.Random(f"fluency:{seed}:{plan.name}").sample(ids, min(size, len(ids))))


def run_locators(handle: ModelHandle, plans: Sequence[DatasetPlan], settings: StudySettings,
                 folder: ResultsFolder) -> None:
    """Each locator the study runs on each data set's proxy requests, unless the folder has it."""
    from goldenlayers.locate import get_locator, study_locators

    done = {row.key for row in folder.locate_rows()}
    for plan in plans:
        store_products(handle, plan, settings, folder, done)
        for method in study_locators():
            key = (handle.name, plan.name, "proxy", method, settings.seed)
            if key in done:
                continue
            log.info("locating on %s proxy with %s", plan.name, method)
            seed_everything(settings.seed)
            scores = get_locator(method, **settings.locator_settings.get(method, {})).locate(
                handle, list(plan.proxy))
            folder.add_locate(LocateRow(*key, scores.to_dict(), scores.seconds, tuple(scores.notes)))


def store_products(handle: ModelHandle, plan: DatasetPlan, settings: StudySettings,
                   folder: ResultsFolder, done: set) -> None:
    """LGA's gradient products of every (weights, old answer) on the proxy, test and pool requests,
    so that every reading of LGA (``locate.readings``) is computed later without the model, and a
    replay can draw search sets from any of a data set's edited requests (``study.replay``)."""
    from goldenlayers.locate import LocateError, compute_products
    from goldenlayers.locate.answers import OLD_ANSWER_SOURCES

    for split_name, requests in (("proxy", plan.proxy), ("test", plan.test), ("pool", plan.pool)):
        key = (handle.name, plan.name, split_name, PRODUCTS, settings.seed)
        if not requests or key in done:
            continue
        log.info("LGA gradient products on %s %s (%d requests)", plan.name, split_name, len(requests))
        start = time.perf_counter()
        products, notes = [], []
        for source in OLD_ANSWER_SOURCES:  # a source with no usable old answer is noted, not fatal
            try:
                products += compute_products(handle, list(requests), old_answers=(source,))
            except LocateError as error:
                notes.append(f"old answer {source}: {error}")
        folder.add_locate(LocateRow(*key, {"products": [p.to_dict() for p in products]},
                                    time.perf_counter() - start, tuple(notes)))


# Requests are ordered by width within windows of this many value batches: most of the gain of
# ordering a whole split (50 SmolLM2 CounterFact requests in batches of 4, each batch's size times
# its widest request's columns, summed: 312 unordered, 264 in windows of 16, 234 all at once), while a run stopped part way has done
# nearly a prefix of the seeded split, as a resumable campaign's interim reports assume.
ORDER_WINDOW_BATCHES = 4


def study_cells(plans: Sequence[DatasetPlan], settings: StudySettings, handle: ModelHandle,
                layers: Sequence[int]) -> list[tuple[CellKey, EditRequest]]:
    """Every cell of the study: per data set, proxy then test, request by request in the seeded
    split's order, every layer. ``run_cells`` runs them ordered by width within windows of
    ``ORDER_WINDOW_BATCHES`` batches of a split; no cell's result depends on the order (up to
    float rounding)."""
    return [(CellKey(handle.name, plan.name, split_name, settings.editor, layer,
                     str(request.case_id), settings.seed), request)
            for plan in plans for split_name in ("proxy", "test")
            for request in plan.split(split_name) for layer in layers]


def wanted_manifest(settings: StudySettings, handle: ModelHandle,
                    plans: Sequence[DatasetPlan]) -> dict[str, object]:
    layers = settings.resolve_layers(handle.num_layers)
    # The resolved config, not just the overrides: a changed default is a changed editor too.
    config = get_editor(settings.editor, **settings.editor_overrides).config_record(handle)
    return {"format": FORMAT, "model": handle.name, "model_fingerprint": handle.fingerprint,
            "num_layers": handle.num_layers, "fixed": settings.fixed(),
            "editors": {settings.editor: {"overrides": dict(settings.editor_overrides),
                                          "config": config}},
            "datasets": {p.name: {"digest": p.digest, "proxy": len(p.proxy), "test": len(p.test)}
                         for p in plans},
            "layers": {f"{p.name}/{settings.editor}": layers for p in plans}}


def run_study(settings: StudySettings, run_dir: str | Path, *, executor: str = "local",
              device: str = "cpu", workers: int | None = None, ray_address: str | None = None,
              num_cpus: int | None = None, requests_per_batch: int = 4) -> StudyRun:
    """Run (or resume, or extend) the study in ``run_dir``; contradicting settings are refused."""
    start = time.perf_counter()
    check_executor(executor)
    with run_lock(run_dir):  # one writer; a refused run leaves no folder or lock behind
        return _run_locked(settings, run_dir, start, executor=executor, device=device,
                           workers=workers, ray_address=ray_address, num_cpus=num_cpus,
                           requests_per_batch=requests_per_batch)


def _run_locked(settings: StudySettings, run_dir: str | Path, start: float, *, executor: str,
                device: str, workers: int | None, ray_address: str | None,
                num_cpus: int | None, requests_per_batch: int) -> StudyRun:
    handle = load_model(settings.model, device=device, dtype=settings.dtype)
    plans = plan_datasets(settings)
    manifest = merged_manifest(run_dir, wanted_manifest(settings, handle, plans))
    write_manifest(run_dir, manifest)
    folder = ResultsFolder(run_dir)
    run_locators(handle, plans, settings, folder)
    cells = study_cells(plans, settings, handle, settings.resolve_layers(handle.num_layers))
    done = {row.key for row in folder.cells()}
    todo = [cell for cell in cells if cell[0] not in done]
    log.info("%d of %d cells to do", len(todo), len(cells))
    fluency = frozenset().union(*(fluency_case_ids(p, settings.fluency_size, settings.seed)
                                  for p in plans))
    editor = get_editor(settings.editor, **settings.editor_overrides)  # its profile, if any, too
    runner = CellRunner(handle, editor, settings.metrics, fluency,
                        fluency_procedure(editor.profile))
    run_cells(todo, runner, executor=executor, workers=workers, ray_address=ray_address,
              num_cpus=num_cpus, requests_per_batch=requests_per_batch,
              order_window=ORDER_WINDOW_BATCHES * requests_per_batch, on_row=folder.add_cell,
              label=f"cells ({settings.editor}, request x layer, {executor})")
    return StudyRun(Path(run_dir), len(cells), len(cells) - len(todo), len(todo),
                    time.perf_counter() - start)
