"""Overall (OV): one number per row (a layer, an editor, a selection method) from its metrics.

    OV(row) = mean over metrics m of norm_m(sign_m * row[m]),  sign_m = -1 if m is lower-is-better

The paper says only "the average of all normalized metrics, [lower-is-better ones] negated prior to
normalization"; it does not say how it normalises. Normalisations (``normalisation=``):
- "min-max" (default): over the rows compared, (x - min) / (max - min), so each metric spans [0, 1]
  and a negated one puts its lowest raw value at 1. A constant column (every row equal, or a single
  row) carries no information to rank by: it scores 0.5 in every row, so the scores keep one scale
  whichever columns tie.
- "none": the raw values, a lower-is-better one negated (-x); comparable only between rows of the
  same metrics.
- "one-minus": the raw values with a lower-is-better one as 1 - x, for metrics already in [0, 1].
  The paper's printed OV matches this on several tables (e.g. WikiRecent R-ROME: mean of RwA, LOC,
  PRT and 1 - FLC), whose FLC lies in [0, 1]; our fluency is in bits, so this is for their numbers.
Rows are compared only where they carry the same metrics; the result says which normalisation,
metrics and lower-is-better set produced it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from goldenlayers.errors import GoldenLayersError

NORMALISATIONS = ("min-max", "none", "one-minus")


class OverallScores(list):
    """The Overall score of each row (a list of floats), with how they were computed."""

    def __init__(self, scores: Sequence[float], normalisation: str, metrics: tuple[str, ...],
                 lower_is_better: frozenset[str]):
        super().__init__(scores)
        self.normalisation = normalisation
        self.metrics = metrics
        self.lower_is_better = lower_is_better

    def describe(self) -> str:
        flipped = [m for m in self.metrics if m in self.lower_is_better]
        negated = f", {', '.join(flipped)} negated" if flipped else ""
        names = ", ".join(self.metrics)
        return f"Overall = mean of {self.normalisation}-normalised {names}{negated}"


def min_max(column: Sequence[float]) -> list[float]:
    """(x - min) / (max - min) over the column; 0.5 everywhere when the column is constant."""
    low, high = min(column), max(column)
    if high == low:
        return [0.5] * len(column)
    return [(x - low) / (high - low) for x in column]


def _columns(rows: Sequence[Mapping[str, float]], metrics: Sequence[str] | None) -> tuple[str, ...]:
    if not rows:
        raise GoldenLayersError("overall_score needs at least one row")
    names = tuple(metrics) if metrics is not None else tuple(rows[0])
    for i, row in enumerate(rows):
        for name in names:
            value = row.get(name)
            if value is None or value != value:  # missing, None or NaN
                raise GoldenLayersError(f"row {i} has no value for metric {name!r}; Overall "
                                        "compares rows only over the metrics they all carry")
    if not names:
        raise GoldenLayersError("overall_score needs at least one metric")
    return names


def overall_score(rows: Sequence[Mapping[str, float]],
                  lower_is_better: Collection[str] = (),
                  normalisation: str = "min-max",
                  metrics: Sequence[str] | None = None) -> OverallScores:
    """The Overall score of each row, over ``metrics`` (default: the first row's keys).

    ``lower_is_better``: metrics to negate first; none of ours (``HIGHER_IS_BETTER``), but a
    table whose metric falls as it improves (the paper's FLC) names it here."""
    if normalisation not in NORMALISATIONS:
        raise GoldenLayersError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, "
                                f"not {normalisation!r}")
    names = _columns(rows, metrics)
    flipped = frozenset(lower_is_better)
    normalised = []
    for name in names:
        column = [float(row[name]) for row in rows]
        if name in flipped:
            column = [1.0 - x if normalisation == "one-minus" else -x for x in column]
        normalised.append(min_max(column) if normalisation == "min-max" else column)
    scores = [sum(values) / len(names) for values in zip(*normalised)]
    return OverallScores(scores, normalisation, names, flipped)
