"""Value optimisation seconds per request against how many requests share one batch.

The study optimises the values of ``--batch-requests`` requests at one layer together (each
request's delta in its own rows). On a CPU the matrices of a small model's batch are thin, so a
step costs nearly as much for 4 requests as for 16 (the weights are read either way); this runs the
same requests at several layers in batches of each size, in turns, on one thread (as a study worker
runs), and reports seconds per request, to set the default of ``--batch-requests``.

    python benchmarks/value_batches.py                  # SmolLM2, CounterFact and zsRE
    python benchmarks/value_batches.py --sizes 1,4,8,16 --layers 0,15,29

Prints the figures and writes benchmarks/results/value_batches.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from goldenlayers.data import load_dataset
from goldenlayers.editing import EditCache, get_editor
from goldenlayers.editing.batches import prepared_batch
from goldenlayers.editing.values import optimise_values
from goldenlayers.models import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "value_batches.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="counterfact,zsre")
    parser.add_argument("--requests", type=int, default=8, help="per data set")
    parser.add_argument("--sizes", default="4,8,16", help="requests per batch")
    parser.add_argument("--layers", default="0,10,20")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    handle = load_model(args.model)
    editor = get_editor("r-rome")
    config = editor.config_for(handle)
    cache = EditCache()
    requests = [r for name in args.data.split(",")
                for r in list(load_dataset(name).requests)[: args.requests]]
    prepared = [prepared_batch(handle, r, config, cache) for r in requests]
    sizes = [int(x) for x in args.sizes.split(",")]
    layers = [int(x) for x in args.layers.split(",")]
    seconds = {size: 0.0 for size in sizes}
    values = {size: {} for size in sizes}
    load_before = os.getloadavg()
    for round_ in range(args.rounds):
        for layer in layers:
            site = handle.adapter.edit_module(handle.model, layer)
            for size in sizes:
                start = time.perf_counter()
                for first in range(0, len(prepared), size):
                    batch = prepared[first: first + size]
                    for rb, result in zip(batch, optimise_values(handle, batch, layer, site, config)):
                        values[size][(rb.request.case_id, layer)] = result.value
                seconds[size] += time.perf_counter() - start
        print(f"round {round_ + 1}: " + ", ".join(f"{s} per batch {seconds[s]:.1f} s" for s in sizes),
              flush=True)
    optimisations = len(prepared) * len(layers) * args.rounds
    reference = values[sizes[0]]
    difference = {size: max(float((values[size][k] - reference[k]).abs().max() /
                                   reference[k].abs().max()) for k in reference) for size in sizes}
    result = {"benchmark": "value_batches", "model": args.model, "data": args.data,
              "requests": len(prepared), "layers": layers, "rounds": args.rounds,
              "threads": args.threads,
              "sizes": {str(s): {"seconds_per_request": seconds[s] / optimisations,
                                 "max_relative_value_difference_to_first_size": difference[s]}
                        for s in sizes},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for s in sizes:
        print(f"{s} requests per batch: {seconds[s] / optimisations:.2f} s per request "
              f"(values differ from {sizes[0]} per batch by at most {difference[s]:.1e}, relative)")


if __name__ == "__main__":
    main()
