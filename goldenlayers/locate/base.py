"""What every locator returns (``LayerScores``), the ``Locator`` interface, and the registry.

All locators share one signature, ``locate(handle, requests) -> LayerScores``, so LGA, causal
tracing and brute force can be compared and tested against each other. A new method is one new
module that defines a ``Locator`` subclass decorated with ``@register``: a settings dataclass
(``settings_class``, whose fields are the method's options on the command line), whether the study
runs it on each proxy set (``in_study``), and ``locate``, which returns ``self.result(...)``. The
command line, the study and the report read the registry (``LOCATORS``), never a method's name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from goldenlayers.engine.ranking import direction_name, parse_direction, rank_layers
from goldenlayers.errors import GoldenLayersError
from goldenlayers.options import check_known_keys, parse_assignments


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
    requests: int | None = None  # how many requests were resampled, where not all of the run's

    def to_dict(self) -> dict[str, Any]:
        found = {"resamples": self.resamples, "seed": self.seed, "win_share": dict(self.win_share)}
        return found | ({"requests": self.requests} if self.requests is not None else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerStability:
        """Also reads JSON, whose object keys are strings."""
        return cls(int(data["resamples"]), int(data["seed"]),
                   {int(layer): float(share) for layer, share in data["win_share"].items()},
                   data.get("requests"))


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

    @property
    def higher_is_better(self) -> bool:
        return parse_direction(self.direction)

    def ranking(self) -> list[int]:
        """All kept layers, best first (ties: shallower first)."""
        return rank_layers(self.scores, self.excluded, self.higher_is_better)

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


# --- settings ------------------------------------------------------------------------------------


def option_names(settings_class: type) -> tuple[str, ...]:
    """The settings a locator takes, in declaration order: its options, and nothing else."""
    return tuple(f.name for f in dataclasses.fields(settings_class))


def build_settings(settings_class: type, overrides: dict[str, Any]):
    """``settings_class(**overrides)``, but an unknown key is an error that names it."""
    check_known_keys(overrides, option_names(settings_class),
                     f"{settings_class.__name__} setting", LocateError)
    return settings_class(**overrides)


def typed_options(settings_class: type, assignments: Sequence[str]) -> dict[str, Any]:
    """``["fence_k=1.5", "combine=sum"]`` as typed settings of ``settings_class``, by its fields'
    types: "none" for an optional value, JSON for a dict or list; an unknown key names the valid
    ones."""
    hints = typing.get_type_hints(settings_class)
    given = parse_assignments(assignments, "locator option", LocateError)
    check_known_keys(given, option_names(settings_class), f"{settings_class.__name__} setting",
                     LocateError)
    return {key: _typed(key, text, hints[key]) for key, text in given.items()}


def _typed(key: str, text: str, annotation: Any) -> Any:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else (annotation,)
    if type(None) in kinds and text.lower() == "none":
        return None
    kind = next(k for k in kinds if k is not type(None))
    try:
        if kind is bool and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind in (int, float):
            value = kind(text)
            if math.isfinite(value):
                return value
        elif kind is str:
            return text
        elif (typing.get_origin(kind) or kind) in (dict, tuple, list):
            return json.loads(text)
    except ValueError:
        pass
    raise LocateError(f"option {key} expects {getattr(kind, '__name__', kind)}"
                      f"{' or none' if type(None) in kinds else ''}, not {text!r}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise LocateError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise LocateError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")


# --- locators and their registry -----------------------------------------------------------------


class Locator(ABC):
    """Ranks a model's layers for editing from a proxy set of edit requests.

    ``in_study``: the study runs it on each data set's proxy set and the report compares it with
    brute force. ``scores_are_means``: ``scores`` are the per-layer means of ``per_request`` (metric
    values), so ``locate --json`` adds their bootstrap intervals. ``score_label`` names the scores
    on the report's figures.
    """

    name: ClassVar[str]
    settings_class: ClassVar[type]
    in_study: ClassVar[bool] = False
    scores_are_means: ClassVar[bool] = False
    score_label: ClassVar[str] = "score"

    def __init__(self, **settings: Any):
        self.settings = build_settings(self.settings_class, settings)

    @abstractmethod
    def locate(self, handle, requests) -> LayerScores:
        """Score every layer of ``handle``'s model on ``requests`` (a list of ``EditRequest``)."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return option_names(cls.settings_class)

    @classmethod
    def shared_settings(cls, shared: Mapping[str, Any]) -> dict[str, Any]:
        """The ``locate`` command's shared options (``top_k``, ``seed``, ``editor``, ...) that this
        method's settings have, by name; a method whose seed has another name says so here."""
        return {name: value for name, value in shared.items() if name in cls.option_names()}

    def settings_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    def result(self, handle, cost, scores: Sequence[float], per_request: Sequence[Sequence[float]],
               request_ids: Sequence[str], *, excluded: Sequence[int] = (),
               higher_is_better: bool = True, notes: Sequence[str] = (),
               **extra: Any) -> LayerScores:
        """The ``LayerScores`` of a run: the golden layer and the top k (``settings.top_k``, when
        the settings have one) ranked by ``engine.ranking``; ``cost`` is ``measure``'s."""
        scores = [float(value) for value in scores]
        ranking = rank_layers(scores, excluded, higher_is_better)
        if not ranking:
            raise LocateError(f"{self.name}: every layer is excluded, so there is no layer to choose")
        top_k = getattr(self.settings, "top_k", None)
        return LayerScores(
            method=self.name, model=handle.name, model_fingerprint=handle.fingerprint,
            scores=scores, excluded=sorted(excluded), golden_layer=ranking[0],
            top_k=ranking[:top_k], per_request=[[float(v) for v in row] for row in per_request],
            seconds=cost.seconds, peak_memory_bytes=cost.peak_memory_bytes,
            settings=self.settings_dict(), direction=direction_name(higher_is_better),
            request_ids=[str(i) for i in request_ids], notes=list(notes), **extra)

    def not_applicable(self, handle, cost, notes: list[str], request_ids: list[str],
                       **extra: Any) -> LayerScores:
        """No layer, and ``notes`` say why: a locator that has nothing to measure names none
        rather than rank noise (``golden_layer: null`` in JSON)."""
        return LayerScores(
            method=self.name, model=handle.name, model_fingerprint=handle.fingerprint,
            scores=[], excluded=[], golden_layer=None, top_k=[], per_request=[],
            seconds=cost.seconds, peak_memory_bytes=cost.peak_memory_bytes,
            settings=self.settings_dict(), request_ids=request_ids, notes=notes, **extra)


# name -> class, in registration order (locate/__init__'s imports): the order of the report's rows
LOCATORS: dict[str, type[Locator]] = {}


def register(locator_class: type[Locator]) -> type[Locator]:
    LOCATORS[locator_class.name] = locator_class
    return locator_class


def locator_class(name: str) -> type[Locator]:
    """A registered locator class by name; an unknown name lists those that exist."""
    if name not in LOCATORS:
        raise LocateError(f"unknown locator {name!r}; available: {', '.join(sorted(LOCATORS))}")
    return LOCATORS[name]


def get_locator(name: str, **settings: Any) -> Locator:
    """A locator by name (``lga``, ``cma``, ``brute-force``) with its settings overridden."""
    return locator_class(name)(**settings)


def study_locators() -> tuple[str, ...]:
    """The locators a study runs on each proxy set (``in_study``), in registration order."""
    return tuple(name for name, cls in LOCATORS.items() if cls.in_study)
