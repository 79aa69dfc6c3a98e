"""Digests of what a run, a cache entry or an output was made from, and the check that an input
has not changed since."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goldenlayers.errors import GoldenLayersError

CHUNK = 1 << 20


class InputChanged(GoldenLayersError):
    """An input a run was made from has changed since; names what changed."""


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_digest(settings: Any) -> str:
    """SHA-256 (hex) of a JSON-able value, independent of key order (others: ``str``)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def check_unchanged(recorded: Mapping[str, str], current: Mapping[str, str], *,
                    where: str | Path, what: str = "data file") -> None:
    """Raise ``InputChanged`` when a digest in ``current`` differs from the one ``recorded`` for
    the same name (names present on one side only count as changed too). ``where``: the run."""
    changed = sorted(name for name in {*recorded, *current} if recorded.get(name) != current.get(name))
    if not changed:
        return
    details = []
    for name in changed:
        if name not in recorded:
            details.append(f"{name} (not in the run)")
        elif name not in current:
            details.append(f"{name} (the run has it, this one does not)")
        else:
            details.append(f"{name} (digest {recorded[name][:12]} then, {current[name][:12]} now)")
    raise InputChanged(f"{where}: the {what}{'s' if len(changed) > 1 else ''} changed since the run "
                       f"started: {'; '.join(details)}. Restore them, or use a new --out")
