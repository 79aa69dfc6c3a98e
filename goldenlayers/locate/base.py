"""What every locator returns (``LayerScores``), the ``Locator`` interface, and the registry.

All locators share one signature, ``locate(handle, requests) -> LayerScores``, so LGA, causal
tracing and brute force can be compared and tested against each other. A new method is one new
module that defines a ``Locator`` subclass decorated with ``@register``.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from goldenlayers.errors import GoldenLayersError
from goldenlayers.options import check_known_keys
from goldenlayers.locate.fences import excluded_layers, golden_layer, rank_layers


class LocateError(GoldenLayersError):
    pass


@dataclass(frozen=True)
class LayerStability:
    """How often each layer wins when the requests are resampled with replacement (bootstrap).

    ``win_share``: layer -> share of the resamples it won (only layers that won; the shares sum
    to 1), most frequent first (equal shares: shallower first).
    """

    resamples: int
    seed: int
    win_share: dict[int, float]

    def to_dict(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "seed": self.seed, "win_share": dict(self.win_share)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerStability:
        """Also reads JSON, whose object keys are strings."""
        return cls(int(data["resamples"]), int(data["seed"]),
                   {int(layer): float(share) for layer, share in data["win_share"].items()})


@dataclass
class LayerScores:
    """Per-layer scores of one locator run and the layer they choose.

    ``per_request[i][l]`` is request ``request_ids[i]``'s contribution to layer l's score (LGA:
    s_i(l); CMA: the indirect effect; brute force: the metric). ``top_k`` lists the best kept layers,
    best first; ``excluded`` the layers the outlier fences dropped. ``direction`` says which end of
    ``scores`` is best (an LGA mean-rank reading: the lowest). ``stability``: how often each layer
    wins over bootstrap resamples of the requests (LGA); ``reading``: the LGA reading's name.
    """

    method: str
    model: str
    model_fingerprint: str
    scores: list[float]
    excluded: list[int]
    golden_layer: int | None  # None: the method is not applicable here (``notes`` say why)
    top_k: list[int]
    per_request: list[list[float]]
    seconds: float
    peak_memory_bytes: int | None
    settings: dict[str, Any]
    direction: str = "argmax"
    request_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stability: LayerStability | None = None
    reading: str | None = None
    trials: Any = None  # the staged locate's TrialSummary (locate/staged.py); None elsewhere

    @property
    def num_layers(self) -> int:
        return len(self.scores)

    def ranking(self) -> list[int]:
        """All kept layers, best first (ties: shallower first)."""
        return rank_layers(self.scores, self.excluded, self.direction)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerScores:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {key: value for key, value in data.items() if key in names}
        if isinstance(fields.get("stability"), dict):
            fields["stability"] = LayerStability.from_dict(fields["stability"])
        if isinstance(fields.get("trials"), dict):
            from goldenlayers.locate.staged import TrialSummary  # the one locator that has them

            fields["trials"] = TrialSummary.from_dict(fields["trials"])
        return cls(**fields)


def summarise(scores: Sequence[float], *, fence_k: float | None, direction: str,
              top_k: int) -> tuple[list[int], int, list[int]]:
    """(excluded, golden layer, top-k layers) from per-layer scores."""
    excluded = excluded_layers(scores, fence_k)
    golden = golden_layer(scores, excluded, direction)
    return excluded, golden, rank_layers(scores, excluded, direction)[:top_k]


# --- settings ------------------------------------------------------------------------------------


def build_settings(settings_class: type, overrides: dict[str, Any]):
    """``settings_class(**overrides)``, but an unknown key is an error that names it."""
    check_known_keys(overrides, [f.name for f in dataclasses.fields(settings_class)],
                     f"{settings_class.__name__} setting", LocateError)
    return settings_class(**overrides)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise LocateError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise LocateError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")


# --- locators and their registry -----------------------------------------------------------------


class Locator(ABC):
    """Ranks a model's layers for editing from a proxy set of edit requests."""

    name: ClassVar[str]
    settings_class: ClassVar[type]

    def __init__(self, **settings: Any):
        self.settings = build_settings(self.settings_class, settings)

    @abstractmethod
    def locate(self, handle, requests) -> LayerScores:
        """Score every layer of ``handle``'s model on ``requests`` (a list of ``EditRequest``)."""

    def settings_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    def not_applicable(self, handle, cost, notes: list[str], request_ids: list[str],
                       **extra: Any) -> LayerScores:
        """No layer, and ``notes`` say why: a locator that has nothing to measure names none
        rather than rank noise (``golden_layer: null`` in JSON)."""
        return LayerScores(
            method=self.name, model=handle.name, model_fingerprint=handle.fingerprint,
            scores=[], excluded=[], golden_layer=None, top_k=[], per_request=[],
            seconds=cost.seconds, peak_memory_bytes=cost.peak_memory_bytes,
            settings=self.settings_dict(), request_ids=request_ids, notes=notes, **extra)


LOCATORS: dict[str, type[Locator]] = {}


def register(locator_class: type[Locator]) -> type[Locator]:
    LOCATORS[locator_class.name] = locator_class
    return locator_class


def get_locator(name: str, **settings: Any) -> Locator:
    """A locator by name (``lga``, ``cma``, ``brute-force``) with its settings overridden."""
    if name not in LOCATORS:
        raise LocateError(f"unknown locator {name!r}; available: {', '.join(sorted(LOCATORS))}")
    return LOCATORS[name](**settings)
