"""The settings of a study: what it runs on and how big it is. Validated on construction.

Everything here that changes a result is stored in the run directory; the executor, the device and
the number of workers are not (they change how fast, not what).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from goldenlayers.engine.layers import parse_layers, split_names
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate.metrics import METRICS
from goldenlayers.options import check_known_keys, parse_assignments


@dataclass(frozen=True)
class StudySettings:
    """``layers``: "all" (the default: every layer, so the golden layer is the best one), "all:2"
    (every 2nd layer), "4,8,12", "0-11", "0-29:3", or a mix.

    ``metrics``: None for each data set's teacher-forced metrics (fluency generates 100 tokens per
    edit, so it is asked for by name, as in ``goldenlayers.evaluate``); "all" for every metric.

    ``test_size`` and ``proxy_size`` cap the test and proxy requests taken per data set from a
    seeded ``proxy_fraction`` split (None: all of them). ``fluency_size`` test requests (seeded)
    also get fluency, which generates text and costs more than the other metrics together.
    ``pool_size``: extra requests from the test side, disjoint from the test requests, on which LGA's
    gradient products are also computed (for the proxy-size curve); they are never edited.

    ``locator_settings``: per locator the study runs (``locate.study_locators``), its settings
    that differ from the defaults, e.g. ``{"lga": {"fence_k": 1.5}}``.
    """

    model: str
    datasets: tuple[str, ...]
    editor: str = "r-rome"
    proxy_fraction: float = 0.1
    test_size: int | None = 6
    proxy_size: int | None = 3
    seed: int = 0
    layers: str = "all"
    dtype: str = "float32"
    fluency_size: int = 0
    pool_size: int = 0
    metrics: tuple[str, ...] | None = None  # None: every metric each data set supports
    editor_overrides: dict[str, object] = field(default_factory=dict)  # get_editor's keywords
    locator_settings: dict[str, dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.datasets, str):
            object.__setattr__(self, "datasets", tuple(split_names(self.datasets)))
        if isinstance(self.metrics, str):
            names = METRICS if self.metrics == "all" else tuple(split_names(self.metrics))
            object.__setattr__(self, "metrics", names)
        if self.metrics is not None:
            unknown = [name for name in self.metrics if name not in METRICS]
            if unknown:
                raise GoldenLayersError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
        if not self.datasets:
            raise GoldenLayersError("a study needs at least one data set (--data)")
        if len(set(self.datasets)) != len(self.datasets):
            raise GoldenLayersError(f"data sets named twice in {','.join(self.datasets)}")
        if not 0.0 < self.proxy_fraction < 1.0:
            raise GoldenLayersError(f"proxy_fraction must be in (0, 1), got {self.proxy_fraction}")
        for name in ("test_size", "proxy_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise GoldenLayersError(f"{name} must be at least 1 (or None for all), got {value}")
        for name in ("fluency_size", "pool_size"):
            if getattr(self, name) < 0:
                raise GoldenLayersError(f"{name} must be >= 0, got {getattr(self, name)}")
        parse_layers(self.layers, None)  # syntax check now; bounds once the model is known
        self._check_locator_settings()
        object.__setattr__(self, "editor_overrides", typed_overrides(self.editor, self.editor_overrides))

    def _check_locator_settings(self) -> None:
        from goldenlayers.locate import get_locator, study_locators

        for method, overrides in self.locator_settings.items():
            if method not in study_locators():
                raise GoldenLayersError(f"locator_settings names {method!r}, which the study does "
                                        f"not run; it runs {', '.join(study_locators())}")
            get_locator(method, **overrides)  # an unknown or bad setting is named now

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> StudySettings:
        check_known_keys(values, [f.name for f in fields(cls)], "study setting")
        return cls(**values)

    def fixed(self) -> dict[str, object]:
        """What every row of a run folder must share: a folder made with other values is refused.
        Data sets, editors and layers are not here: a folder grows by adding them."""
        record = asdict(self)
        for name in ("model", "datasets", "editor", "editor_overrides", "layers"):
            record.pop(name)
        record["metrics"] = None if self.metrics is None else list(self.metrics)
        record["locator_settings"] = {m: s for m, s in self.locator_settings.items() if s}
        return upgraded_fixed(json.loads(json.dumps(record, sort_keys=True, default=str)))

    def resolve_layers(self, num_layers: int) -> list[int]:
        return parse_layers(self.layers, num_layers)


def upgraded_fixed(fixed: dict[str, object]) -> dict[str, object]:
    """A stored ``fixed`` record as this version writes it, so an older folder resumes: before the
    locator registry it held ``lga_settings`` and ``cma_settings`` (empty when left at the
    defaults); now ``locator_settings`` holds each locator's non-default settings, if any."""
    record = dict(fixed)
    nested = dict(record.pop("locator_settings", None) or {})  # type: ignore[arg-type]
    for key in [key for key in record if key.endswith("_settings")]:
        overrides = record.pop(key)
        if overrides:
            nested[key.removesuffix("_settings")] = overrides
    if nested:
        record["locator_settings"] = dict(sorted(nested.items()))
    return record


def typed_overrides(editor: str, overrides: dict[str, object] | list[str]) -> dict[str, object]:
    """``get_editor``'s keywords, typed ("5" -> 5) and checked against the editor's config, so the
    command line and the Python API store the same settings: the hyperparameters, and the profile
    where it is not "default" (study.json stored it so before it was a keyword)."""
    from goldenlayers.editing import get_editor

    chosen = get_editor(editor, **parse_assignments(overrides, "editor setting"))
    profile = {} if chosen.profile == "default" else {"profile": chosen.profile}
    return {**profile, **chosen.overrides}
