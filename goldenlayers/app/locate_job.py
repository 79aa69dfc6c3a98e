"""The main job around the locators: a proxy set drawn from a data set, the golden layer cached on
disk for ``goldenlayers edit --layer auto``, and a check of the chosen layer on held-out requests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldenlayers.data import load_dataset, split
from goldenlayers.editing import get_editor
from goldenlayers.editing.batches import ordered_for_batching
from goldenlayers.engine import CellKey, CellRow, CellRunner, layer_batches
from goldenlayers.locate.base import LOCATORS, LayerScores, LocateError, get_locator
from goldenlayers.locate.readings import DEFAULT_READING
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.load import cache_dir
from goldenlayers.progress import track
from goldenlayers.files.atomic import atomic_write_text
from goldenlayers.files.digests import file_digest, settings_digest

log = logging.getLogger(__name__)

DEFAULT_PROXY = 32
CACHE_FORMAT = 1  # bump when LayerScores or the cache key changes meaning


@dataclass
class ProxySplit:
    proxy: list  # EditRequest
    held_out: list


def proxy_split(requests, n: int, seed: int = 0) -> ProxySplit:
    """n requests for the proxy set (seeded, via data.split) and the rest held out."""
    requests = list(requests)
    if n < 1:
        raise LocateError(f"the proxy set needs at least one request, not {n}")
    if n >= len(requests):
        log.warning("proxy size %d >= the %d requests available: using all, none held out",
                    n, len(requests))
        return ProxySplit(requests, [])
    parts = split(requests, proxy_fraction=n / len(requests), seed=seed)
    return ProxySplit(parts.proxy, parts.test)


# --- the golden layer, cached --------------------------------------------------------------------


def _dataset_identity(dataset) -> str:
    """The data set's name plus a hash of its file, so a changed file is a new cache entry."""
    if dataset.path is None or not Path(dataset.path).is_file():
        return dataset.name
    return f"{dataset.name}:{file_digest(dataset.path)[:16]}"


def _cache_file(handle: ModelHandle, identity: str, method: str, settings: dict[str, Any]) -> Path:
    digest = settings_digest({"format": CACHE_FORMAT, "model": handle.fingerprint, "data": identity,
                              "method": method, "settings": settings})[:20]
    return cache_dir() / "golden-layers" / f"{handle.fingerprint}-{method}-{digest}.json"


def _read_cached(path: Path, num_layers: int) -> LayerScores | None:
    """The cached scores, or None (with a one-line warning) when the file is damaged: not JSON,
    fields missing, or a golden layer or score list that does not fit the model."""
    try:
        scores = LayerScores.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if len(scores.scores) != num_layers or scores.golden_layer not in range(num_layers):
            raise ValueError(f"{len(scores.scores)} scores and golden layer {scores.golden_layer!r} "
                             f"for a {num_layers}-layer model")
        return scores
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("the cached golden layer %s is damaged (%s); locating again", path,
                    " ".join(str(error).split())[:120])
        return None


def layer_scores_cached(handle: ModelHandle, dataset_name: str,
                        settings: dict[str, Any] | None = None, *,
                        method: str = "lga") -> LayerScores:
    """Locate on the data set's proxy set once per (model fingerprint, data set, settings).

    ``settings``: the locator's settings plus ``proxy`` (size, default 32) and ``seed`` (of the
    proxy split, default 0). The result is kept as JSON under the goldenlayers cache folder.
    """
    settings = dict(settings or {})
    n, seed = settings.pop("proxy", DEFAULT_PROXY), settings.pop("seed", 0)
    locator = get_locator(method, **settings)  # validates the settings before any work
    dataset = load_dataset(dataset_name)
    full = {**locator.settings_dict(), "proxy": n, "seed": seed}
    path = _cache_file(handle, _dataset_identity(dataset), method, full)
    cached = _read_cached(path, handle.num_layers) if path.exists() else None
    if cached is not None:
        log.info("golden layer from the cache: %s", path)
        return cached
    scores = locator.locate(handle, proxy_split(dataset.requests, n, seed).proxy)
    atomic_write_text(path, scores.to_json())
    return scores


def golden_layer_cached(handle: ModelHandle, dataset_name: str,
                        settings: dict[str, Any] | None = None) -> int | None:
    """The LGA golden layer (``layer_scores_cached``); None where LGA is not applicable."""
    return layer_scores_cached(handle, dataset_name, settings, method="lga").golden_layer


# --- checking the chosen layer -------------------------------------------------------------------


def verify_at_layer(handle: ModelHandle, requests, layer: int, editor: str = "r-rome",
                    metrics=None, seed: int = 0) -> list[CellRow]:
    """Edit each request alone at ``layer``, score it, restore: one engine cell per request, the
    rows in the order of ``requests``. The cells run in ``ordered_for_batching`` order: neighbours
    share a value batch (``layer_batches``), which recomputes its widest request's columns."""
    runner = CellRunner(handle, get_editor(editor), metrics)
    runner.pre_edit(list(requests))
    cells = [(CellKey(handle.name, "held-out", "held-out", editor, layer, str(request.case_id),
                      seed), request)
             for request in ordered_for_batching(requests, handle.tokenizer)]
    rows = [row for batch in track(layer_batches([key for key, _ in cells]),
                                   f"verify at layer {layer}")
            for row in runner.run_batch([cells[i] for i in batch])]
    position = {str(request.case_id): i for i, request in enumerate(requests)}
    return sorted(rows, key=lambda row: position[row.key.case_id])


def locator_settings(method: str, *, top_k: int = 5, seed: int = 0, editor: str = "r-rome",
                     fence_k: float | None = DEFAULT_READING.fence_k,
                     direction: str = DEFAULT_READING.direction,
                     weights: str = DEFAULT_READING.weights,
                     old_answer: str = DEFAULT_READING.old_answer,
                     similarity: str = DEFAULT_READING.similarity,
                     combine: str = DEFAULT_READING.combine, layers: str = "all",
                     dataset: str = "requests") -> dict[str, Any]:
    """The command line's options as the settings of the chosen method (each takes what it has).

    LGA's bootstrap stability uses ``seed`` too, so one seed reproduces the whole run."""
    if method == "lga":
        return dict(top_k=top_k, fence_k=fence_k, direction=direction, weights=weights,
                    old_answer=old_answer, similarity=similarity, combine=combine,
                    stability_seed=seed)
    if method == "cma":
        return dict(top_k=top_k, seed=seed)
    if method == "brute-force":
        return dict(top_k=top_k, editor=editor, layers=layers, dataset=dataset, seed=seed)
    return {}  # get_locator names the methods that exist


def settings_fields(method: str) -> set[str]:
    """The names of a registered locator's settings (its settings dataclass's fields)."""
    if method not in LOCATORS:
        raise LocateError(f"unknown --method {method!r}; available: {', '.join(sorted(LOCATORS))}")
    return {f.name for f in dataclasses.fields(LOCATORS[method].settings_class)}


def method_options(method: str, given: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The options the user gave (option -> (settings field, value)) as the method's settings;
    an option whose field the method's settings do not have is refused, naming the option, the
    method, and the methods it belongs to. Checked before any work."""
    fields = settings_fields(method)
    for option, (name, _) in given.items():
        if name not in fields:
            owners = sorted(m for m in LOCATORS if name in settings_fields(m))
            raise LocateError(f"{option} is not used by --method {method}; it is an option of "
                              f"--method {' or '.join(owners) or '(none)'}: leave it out")
    return {name: value for name, value in given.values()}
