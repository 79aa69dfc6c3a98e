"""Errors of an edit that a user can act on; each names the request it stopped at."""

from __future__ import annotations

from goldenlayers.errors import GoldenLayersError


class EditError(GoldenLayersError):
    """An edit could not be made (absent subject, non-finite loss or delta, tiny denominator).
    The weights are as they were before the edit started."""


class ConfigError(GoldenLayersError):
    """A hyperparameter, profile or stored config is invalid; names the key or the profile."""


class PatchError(GoldenLayersError):
    """A patch file is unreadable, or made for another model."""


def describe(request) -> str:
    """'request 7 ("Apple A5 was created by" -> "Google")', for error messages."""
    case = getattr(request, "case_id", "") or "?"
    return f"request {case} ({getattr(request, 'prompt', '')!r} -> {getattr(request, 'target_new', '')!r})"
