"""Settings given as ``key=value`` strings or as keywords: the one parser and the one check for
unknown keys, shared by the editors' configs, the locators' and the study's settings and the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from goldenlayers.errors import GoldenLayersError


def parse_assignments(items: Iterable[str] | Mapping[str, Any] | None, what: str = "setting",
                      error: type[GoldenLayersError] = GoldenLayersError) -> dict[str, Any]:
    """``["v_lr=0.1", "fast = false"]`` -> ``{"v_lr": "0.1", "fast": "false"}`` (values stay
    strings, for the receiver to type); a mapping is returned as a dict. ``what`` names the
    items in the error (e.g. "--set")."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise error(f"{what} {item!r} is not key=value")
        values[key.strip()] = value.strip()
    return values


def check_known_keys(values: Iterable[str], known: Iterable[str], what: str,
                     error: type[GoldenLayersError] = GoldenLayersError) -> None:
    """Refuse the first key of ``values`` not in ``known``, naming it and listing the known ones;
    ``what`` names the receiver (e.g. "RomeConfig key", "study setting")."""
    known = list(known)
    unknown = [key for key in values if key not in known]
    if unknown:
        raise error(f"unknown {what} {unknown[0]!r}; valid: {', '.join(known)}")
