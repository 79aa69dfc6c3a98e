"""The ``--layers`` option: which layers brute force edits (every layer unless told otherwise)."""

from __future__ import annotations

from goldenlayers.errors import GoldenLayersError

def split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_layers(spec: str, num_layers: int | None) -> list[int]:
    """Layer indices named by ``spec`` (sorted, unique); bounds checked when ``num_layers`` given."""
    chosen: set[int] = set()
    for item in split_names(spec):
        chosen.update(_parse_item(item, spec, num_layers))
    if not chosen and num_layers is not None:
        raise GoldenLayersError(f"--layers {spec!r} names no layer")
    if num_layers is not None:
        outside = sorted(layer for layer in chosen if not 0 <= layer < num_layers)
        if outside:
            raise GoldenLayersError(
                f"--layers {spec!r} names layer {outside[0]}, but the model has layers 0-{num_layers - 1}")
    return sorted(chosen)


def _parse_item(item: str, spec: str, num_layers: int | None) -> range:
    span, _, step_text = item.partition(":")
    try:
        step = int(step_text) if step_text else 1
        if span == "all":
            start, stop = 0, (num_layers - 1 if num_layers is not None else 0)
        elif "-" in span:
            start, stop = (int(part) for part in span.split("-", 1))
        else:
            start = stop = int(span)
    except ValueError:
        raise GoldenLayersError(
            f"--layers {spec!r}: cannot read {item!r}; use all, all:2, 4,8,12, 0-11 or 0-29:3"
        ) from None
    if step < 1 or stop < start:
        raise GoldenLayersError(f"--layers {spec!r}: {item!r} is an empty range")
    return range(start, stop + 1, step)
