"""Key statistics for every layer: one pass over the corpus per layer, or one pass for all of them.

EMMET and MEMIT (and ROME with ``mom2_adjustment``) weigh their updates by the second moment C of a
layer's keys over WikiText. A study or brute force edits at every layer, so it needs C of every
layer; a pass for each layer runs the corpus through blocks 0..l, one for all of them through every
block once (``covariance.compute_second_moments``, what ``Editor.precompute_statistics`` calls).
This computes C of ``--layers`` both ways, in turns (per-layer first), on ``--threads`` threads,
checks that the matrices are equal bit for bit, and reports the seconds and their ratio.

    python benchmarks/stats_speed.py                   # SmolLM2, every layer, 32 texts
    python benchmarks/stats_speed.py --texts 1000      # the editors' default sample (slow on a CPU)

Prints the figures and writes benchmarks/results/stats_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from goldenlayers.editing.covariance import (compute_second_moment, compute_second_moments,
                                             corpus_texts)
from goldenlayers.engine.layers import parse_layers
from goldenlayers.models import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "stats_speed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", default="all")
    parser.add_argument("--texts", type=int, default=32, help="corpus texts (editors: 1000)")
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    handle = load_model(args.model, device=args.device)
    layers = parse_layers(args.layers, handle.num_layers)
    texts = corpus_texts()
    load_before = os.getloadavg()

    start = time.perf_counter()
    per_layer = {layer: compute_second_moment(handle, layer, args.texts, args.text_tokens, texts)
                 for layer in layers}
    per_layer_seconds = time.perf_counter() - start
    start = time.perf_counter()
    one_pass = compute_second_moments(handle, layers, args.texts, args.text_tokens, texts)
    one_pass_seconds = time.perf_counter() - start

    equal = all(torch.equal(per_layer[layer].matrix, one_pass[layer].matrix) for layer in layers)
    result = {"benchmark": "stats_speed", "model": args.model, "layers": layers,
              "texts": args.texts, "text_tokens": args.text_tokens,
              "tokens": one_pass[layers[0]].n_tokens, "threads": args.threads,
              "device": args.device, "per_layer_seconds": per_layer_seconds,
              "one_pass_seconds": one_pass_seconds, "ratio": per_layer_seconds / one_pass_seconds,
              "equal_bit_for_bit": equal,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(layers)} layers, {args.texts} texts ({result['tokens']} tokens): a pass per layer "
          f"{per_layer_seconds:.1f} s, one pass {one_pass_seconds:.1f} s, "
          f"ratio {result['ratio']:.1f}; equal bit for bit: {equal}")


if __name__ == "__main__":
    main()
