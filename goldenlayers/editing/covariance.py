"""Second moment of the edit matrix's input keys, C = E[k k^T], over plain text (WikiText-2).

ROME (with ``mom2_adjustment``), EMMET and MEMIT weigh their updates by C^-1 so that an edit
disturbs the keys of ordinary text as little as possible. As in ROME's and EasyEdit's layer_stats,
the size of the sample counts *texts* (``mom2_n_samples``, their first n records of the corpus):
each text is a sequence of its own, cut to its first ``mom2_text_tokens`` tokens (the memory cap;
EasyEdit cuts at the model's context length, and no line of the bundled WikiText-2 is longer than
549 GPT-2 tokens), batched, run up to the edit matrix only, and every real token's key counts.
EasyEdit draws its texts at random from Wikipedia; we take the corpus's first ones in file order.

C depends on the weights below the layer, so it is cached per (model fingerprint, layer, texts,
token cap): in memory in an ``EditCache`` and on disk under $GOLDENLAYERS_CACHE/stats, written to a
temporary file and renamed into place, so an interrupted run never leaves a file a later run
would trust; a damaged file (truncated, garbage, wrong shape) is recomputed with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from goldenlayers.editing.cache import EditCache
from goldenlayers.editing.keys import as_float, compute_dtype
from goldenlayers.files.atomic import atomic_path
from goldenlayers.files.tensors import safetensors_problem
from goldenlayers.models.handle import ModelHandle
from goldenlayers.models.hooks import trace
from goldenlayers.models.load import cache_dir
from goldenlayers.models.tokens import pad_rows
from goldenlayers.progress import track

log = logging.getLogger(__name__)

BATCH_TEXTS = 16
STATS_MEMORY_BYTES = 4 * 2**30  # for the float64 sums of one pass's layers


@dataclass
class SecondMoment:
    matrix: torch.Tensor  # (d_in, d_in) float32 (float64 for float64 models), symmetric PSD
    n_tokens: int  # tokens actually counted
    n_texts: int = 0  # texts actually counted
    _factor: torch.Tensor | None = field(default=None, repr=False)  # Cholesky factor, float64

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """C^-1 rhs for rhs (d_in,) or (d_in, E), float64; the factorisation is computed once."""
        if self._factor is None:
            self._factor = _cholesky(self.matrix.double())
        column = rhs.ndim == 1
        rhs = rhs.to(self._factor.device, torch.float64)
        out = torch.cholesky_solve(rhs[:, None] if column else rhs, self._factor)
        return out[:, 0] if column else out


def _cholesky(matrix: torch.Tensor) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        return factor
    ridge = 1e-6 * matrix.diagonal().mean().clamp(min=1e-12)
    log.warning("key second moment is singular; adding %.3g to its diagonal", float(ridge))
    return torch.linalg.cholesky(matrix + ridge * torch.eye(len(matrix), dtype=matrix.dtype,
                                                            device=matrix.device))


def corpus_texts() -> list[str]:
    """The texts C is estimated from (the bundled WikiText-2, detokenised)."""
    from goldenlayers.data import load_corpus_texts

    return load_corpus_texts()


def stats_path(handle: ModelHandle, layer: int, n_texts: int, text_tokens: int) -> Path:
    return (cache_dir() / "stats" / handle.fingerprint
            / f"layer{layer:03d}-{n_texts}texts-{text_tokens}tokens.safetensors")


def second_moment(handle: ModelHandle, layer: int, n_texts: int, text_tokens: int,
                  cache: EditCache | None = None) -> SecondMoment:
    """C for the edit matrix of ``layer`` from the first ``n_texts`` texts of the corpus, each cut
    to ``text_tokens`` tokens: from ``cache``, else from disk, else computed and saved."""
    return second_moments(handle, [layer], n_texts, text_tokens, cache)[layer]


def second_moments(handle: ModelHandle, layers: Sequence[int], n_texts: int, text_tokens: int,
                   cache: EditCache | None = None) -> dict[int, SecondMoment]:
    """``second_moment`` of each of ``layers``; those in neither ``cache`` nor on disk are
    computed together (``compute_second_moments``), so a study of every layer makes one pass over
    the corpus, not one per layer."""
    moments: dict[int, SecondMoment] = {}
    for layer in dict.fromkeys(layers):
        key = (handle.fingerprint, layer, n_texts, text_tokens)
        if cache is not None and key in cache.second_moments:
            moments[layer] = cache.second_moments[key]
            continue
        path = stats_path(handle, layer, n_texts, text_tokens)
        moment = _read_cached(path, handle, layer) if path.exists() else None
        if moment is not None:
            moments[layer] = moment
    missing = [layer for layer in dict.fromkeys(layers) if layer not in moments]
    if missing:
        for layer, moment in compute_second_moments(handle, missing, n_texts, text_tokens).items():
            _save_atomically(stats_path(handle, layer, n_texts, text_tokens), moment, handle, layer)
            moments[layer] = moment
    if cache is not None:
        for layer, moment in moments.items():
            cache.second_moments[(handle.fingerprint, layer, n_texts, text_tokens)] = moment
    return {layer: moments[layer] for layer in layers}


def _read_cached(path: Path, handle: ModelHandle, layer: int) -> SecondMoment | None:
    """The cached C, or None (with a one-line warning) when the file is damaged: a truncated or
    garbage file, a matrix of the wrong shape, or entries that are not finite."""
    d_in = handle.adapter.edit_weight_out_in(handle.model, layer).shape[1]
    problem = safetensors_problem(path)
    if problem is None:
        try:
            loaded = load_file(str(path))
            matrix, n_tokens = loaded["second_moment"], int(loaded["n_tokens"])
            n_texts = int(loaded["n_texts"])
        except Exception as error:  # safetensors raises several types for damaged files
            problem = f"unreadable ({error})"
    if problem is None and tuple(matrix.shape) != (d_in, d_in):
        problem = f"a {tuple(matrix.shape)} matrix, expected ({d_in}, {d_in})"
    if problem is None and (n_tokens < 1 or not bool(torch.isfinite(matrix).all())):
        problem = "non-finite entries or no tokens counted"
    if problem is not None:
        log.warning("the cached key statistics %s are damaged (%s); recomputing them", path, problem)
        return None
    return SecondMoment(matrix.to(handle.device), n_tokens, n_texts)


def token_batches(tokenizer, texts: Sequence[str], n_texts: int,
                  text_tokens: int) -> list[list[list[int]]]:
    """The first ``n_texts`` texts (of at least 2 tokens) tokenised and cut to ``text_tokens``, in
    batches of BATCH_TEXTS."""
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"][:text_tokens]
        if len(ids) < 2:
            continue
        rows.append(ids)
        if len(rows) >= n_texts:
            break
    if len(rows) < n_texts:
        log.warning("the corpus has only %d texts; the statistics use all of them, not %d",
                    len(rows), n_texts)
    return [rows[i: i + BATCH_TEXTS] for i in range(0, len(rows), BATCH_TEXTS)]


@torch.no_grad()
def compute_second_moment(handle: ModelHandle, layer: int, n_texts: int, text_tokens: int,
                          texts: Sequence[str] | None = None) -> SecondMoment:
    return compute_second_moments(handle, [layer], n_texts, text_tokens, texts)[layer]


@torch.no_grad()
def compute_second_moments(handle: ModelHandle, layers: Sequence[int], n_texts: int,
                           text_tokens: int, texts: Sequence[str] | None = None,
                           memory_bytes: int = STATS_MEMORY_BYTES) -> dict[int, SecondMoment]:
    """C of each of ``layers``, the keys of all of them captured in the same forward passes over
    the corpus, each pass stopped after the highest one. Their float64 sums must fit in
    ``memory_bytes`` (LLaMA-2-7B's take 0.97 GB a layer), so the layers go in groups that do, one
    pass over the corpus per group. Each layer's C is the one a pass for it alone gives, bit for
    bit: the same batches through the same operations."""
    texts = corpus_texts() if texts is None else texts
    batches = token_batches(handle.tokenizer, texts, n_texts, text_tokens)
    moments: dict[int, SecondMoment] = {}
    for group in _memory_groups(handle, sorted(set(layers)), memory_bytes):
        moments.update(_one_pass(handle, group, batches))
    return {layer: moments[layer] for layer in layers}


def _memory_groups(handle: ModelHandle, layers: list[int], memory_bytes: int) -> list[list[int]]:
    """Consecutive runs of ``layers`` whose (d_in, d_in) float64 sums fit in ``memory_bytes``
    (at least one layer a group, however large)."""
    groups: list[list[int]] = []
    used = 0
    for layer in layers:
        d_in = handle.adapter.edit_weight_out_in(handle.model, layer).shape[1]
        size = d_in * d_in * 8
        if groups and used + size <= memory_bytes:
            groups[-1].append(layer)
            used += size
        else:
            groups.append([layer])
            used = size
    return groups


def _one_pass(handle: ModelHandle, layers: list[int],
              batches: list[list[list[int]]]) -> dict[int, SecondMoment]:
    modules = {f"layer{layer}": handle.adapter.edit_module(handle.model, layer) for layer in layers}
    totals = {}
    for layer in layers:
        d_in = handle.adapter.edit_weight_out_in(handle.model, layer).shape[1]
        totals[f"layer{layer}"] = torch.zeros(d_in, d_in, dtype=torch.float64, device=handle.device)
    count = 0
    real = torch.zeros(0, dtype=torch.bool)

    def accumulate(name: str, inputs: torch.Tensor) -> None:
        keys = as_float(inputs[real])  # (tokens, d_in): padding's keys do not count
        totals[name] += (keys.T @ keys).double()

    base = handle.model.get_submodule(handle.adapter.base_model)
    span = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}-{layers[-1]}"
    for rows in track(batches, f"key statistics, {span}"):
        # labels and positions are not read: only the padded ids and the mask
        padded = pad_rows(handle.tokenizer, rows, rows, [len(r) for r in rows], [-1] * len(rows))
        input_ids = padded.input_ids.to(handle.device)
        mask = padded.attention_mask.to(handle.device)
        real = mask.bool()
        with trace(modules, on_input=accumulate, stop_after=f"layer{layers[-1]}"):
            base(input_ids=input_ids, attention_mask=mask, use_cache=False)
        count += int(real.sum())
    n_texts = sum(len(rows) for rows in batches)
    # float64 models (the reference tests) keep C in float64; others store float32, half the size
    return {layer: SecondMoment((totals[f"layer{layer}"] / max(count, 1)).to(compute_dtype(handle)),
                                count, n_texts) for layer in layers}


def _save_atomically(path: Path, moment: SecondMoment, handle: ModelHandle, layer: int) -> None:
    with atomic_path(path) as staging:
        save_file({"second_moment": moment.matrix.contiguous().cpu(),
                   "n_tokens": torch.tensor(moment.n_tokens),
                   "n_texts": torch.tensor(moment.n_texts)}, str(staging),
                  metadata={"model": handle.name, "fingerprint": handle.fingerprint,
                            "layer": str(layer)})
