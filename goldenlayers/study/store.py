"""A study's run folder: its result files (``engine.results``) and ``study.json``, which records
what the rows were made with, so that a rerun resumes instead of mixing in other results.

``study.json`` holds the model (name, fingerprint, layers), the settings every row must share
(``StudySettings.fixed``), each editor's hyperparameters and each data set's digest and proxy/test
case ids. A rerun with other fixed settings, another model, other hyperparameters for an editor
already there, or a data set whose records changed is refused with a message naming what differs.
New data sets and editors are added: the campaign grows one folder per model this way.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from goldenlayers.errors import GoldenLayersError
from goldenlayers.files.atomic import atomic_write_text
from goldenlayers.files.digests import settings_digest
from goldenlayers.study.settings import upgraded_fixed

MANIFEST = "study.json"
FORMAT = 2  # 1: the SQLite store (results.sqlite) of goldenlayers 0.1


class SettingsMismatch(GoldenLayersError):
    """The run folder was made with other settings."""


def requests_digest(requests) -> str:
    """A digest of the requests' contents in order: an edited record or a new order changes it."""
    return settings_digest([asdict(r) for r in requests])[:20]


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        if (Path(run_dir) / "results.sqlite").is_file():
            raise GoldenLayersError(
                f"{run_dir} holds a study made by goldenlayers 0.1 (results.sqlite); its results "
                "are not read any more: rerun `goldenlayers study` into a new --out folder")
        raise GoldenLayersError(f"{run_dir} is not a study folder (no {MANIFEST} in it)")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not format {FORMAT}")
    except ValueError as error:
        raise GoldenLayersError(f"{path} is not a study manifest ({error})") from None
    return manifest


def write_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Write study.json atomically (a temporary file renamed over it)."""
    atomic_write_text(Path(run_dir) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def merged_manifest(run_dir: str | Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """The folder's manifest with ``wanted`` added; refuse anything that contradicts it."""
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        if (Path(run_dir) / "results.sqlite").is_file():
            read_manifest(run_dir)  # raises: a 0.1 folder
        return wanted
    stored = read_manifest(run_dir)
    stored["fixed"] = upgraded_fixed(stored["fixed"])  # a folder written before the registry
    problems = []
    for name in ("model_fingerprint", "num_layers", "fixed"):
        if stored[name] != wanted[name]:
            problems.append(_difference(name, stored[name], wanted[name]))
    for section in ("editors", "datasets"):
        for name, value in wanted[section].items():
            if name in stored[section] and stored[section][name] != value:
                what = ("the records of data set " if section == "datasets" else "the settings of "
                        "editor ") + repr(name)
                problems.append(f"{what} changed ({_difference(name, stored[section][name], value)})")
    if problems:
        raise SettingsMismatch(f"run folder {run_dir} was made with other settings: "
                               f"{'; '.join(problems)}. Rerun with the same settings and data to "
                               "resume it, or choose another --out")
    merged = dict(stored)
    merged["editors"] = {**stored["editors"], **wanted["editors"]}
    merged["datasets"] = {**stored["datasets"], **wanted["datasets"]}
    merged["layers"] = {**stored.get("layers", {}), **wanted.get("layers", {})}
    return merged


def _difference(name: str, stored: Any, wanted: Any) -> str:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        return "; ".join(f"{k}: {stored.get(k, '(unset)')!r} there, {wanted.get(k, '(unset)')!r} now"
                         for k in keys)
    return f"{name}: {stored!r} there, {wanted!r} now"
