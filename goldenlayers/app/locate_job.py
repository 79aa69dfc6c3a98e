"""The main job around the locators: a proxy set drawn from a data set, the golden layer cached on
disk for ``goldenlayers edit --layer auto``, and a check of the chosen layer on held-out requests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldenlayers.data import load_dataset, split
from goldenlayers.editing import get_editor
from goldenlayers.engine import CellKey, CellRow, CellRunner, run_cells
from goldenlayers.files.atomic import atomic_write_text
from goldenlayers.files.digests import file_digest, settings_digest
from goldenlayers.locate.base import (LOCATORS, LayerScores, LocateError, get_locator,
                                      locator_class, typed_options)
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.load import cache_dir

log = logging.getLogger(__name__)

DEFAULT_PROXY = 32
DEFAULT_METHOD = "staged"  # locate's and --layer auto's: trial edits decide (docs/findings.md)
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
                        method: str = DEFAULT_METHOD) -> LayerScores:
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
                        settings: dict[str, Any] | None = None,
                        method: str = DEFAULT_METHOD) -> int | None:
    """The golden layer of ``method`` (``layer_scores_cached``); None where it names none."""
    return layer_scores_cached(handle, dataset_name, settings, method=method).golden_layer


def trial_editor_settings(editor) -> dict[str, Any]:
    """The staged locate's trial editor: the editor a user edits with, its profile and settings
    too, so the layer is chosen by the edits that will be made."""
    profile = {} if editor.profile == "default" else {"profile": editor.profile}
    return {"editor": editor.name, "editor_overrides": {**profile, **editor.overrides}}


# --- checking the chosen layer -------------------------------------------------------------------


def verify_at_layer(handle: ModelHandle, requests, layer: int, editor: str = "r-rome",
                    metrics=None, seed: int = 0) -> list[CellRow]:
    """Edit each request alone at ``layer``, score it, restore: one engine cell per request
    (``engine.run_cells``), the rows in the order of ``requests``."""
    runner = CellRunner(handle, get_editor(editor), metrics)
    runner.pre_edit(list(requests))
    cells = [(CellKey(handle.name, "held-out", "held-out", editor, layer, str(request.case_id),
                      seed), request) for request in requests]
    return run_cells(cells, runner, label=f"verify at layer {layer}")


def options_as_settings(method: str, shared: Mapping[str, Any] | None = None,
                        options: Sequence[str] = ()) -> dict[str, Any]:
    """The command line's options as ``method``'s settings: the shared ones its settings have
    (``Locator.shared_settings``), then its own ``key=value`` options, typed by its settings class
    (an option it does not have is refused, naming those it has)."""
    cls = locator_class(method)
    return {**cls.shared_settings(shared or {}), **typed_options(cls.settings_class, options)}


def check_method_uses(method: str, given: Mapping[str, str]) -> None:
    """Refuse a shared option the user set (option -> the settings field it sets) that ``method``
    does not use, naming the methods that do: ``--layers`` with LGA is a mistake, not a no-op."""
    names = locator_class(method).option_names()
    for option, name in given.items():
        if name not in names:
            owners = sorted(m for m, cls in LOCATORS.items() if name in cls.option_names())
            raise LocateError(f"{option} is not used by --method {method}; it is an option of "
                              f"--method {' or '.join(owners) or '(none)'}: leave it out")
