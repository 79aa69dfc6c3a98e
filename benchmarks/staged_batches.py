"""Wall time of the default `goldenlayers locate` (staged) against how many trial requests share
one value optimisation (``-o batch_requests=N``).

The main command runs its trial edits on one process with all of torch's threads. A halving
round edits each surviving layer on a few new requests, and those requests' values are optimised
together in batches of at most ``batch_requests``; thin batches leave the second thread idle.
This runs the main command's locate (SmolLM2-135M, 32 CounterFact proxy requests, seed 0) once per
size, sizes in turns over ``--rounds``, and checks that every size picks the same layer with the
same trial means (batching changes values only by float rounding).

    python benchmarks/staged_batches.py                   # sizes 4,8, one round
    python benchmarks/staged_batches.py --sizes 4,8,10 --rounds 2

Prints the figures and writes benchmarks/results/staged_batches.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from goldenlayers.app.locate_job import DEFAULT_PROXY, proxy_split
from goldenlayers.data import load_dataset
from goldenlayers.editing import get_editor
from goldenlayers.locate import get_locator
from goldenlayers.locate.search import spread_layers
from goldenlayers.locate.staged import DEFAULT_SHORTLIST
from goldenlayers.models import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "staged_batches.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="counterfact")
    parser.add_argument("--proxy", type=int, default=DEFAULT_PROXY)
    parser.add_argument("--sizes", default="4,8", help="requests per value optimisation")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    handle = load_model(args.model, device=args.device)
    requests = proxy_split(load_dataset(args.data).requests, args.proxy, seed=0).proxy
    # the key statistics of the shortlist's layers are computed (or read) once, outside the timing
    get_editor("r-rome").precompute_statistics(handle, spread_layers(handle.num_layers,
                                                                     DEFAULT_SHORTLIST))
    load_before = os.getloadavg()
    runs: dict[int, list[dict]] = {size: [] for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            start = time.perf_counter()
            scores = get_locator("staged", batch_requests=size).locate(handle, requests)
            seconds = time.perf_counter() - start
            trials = scores.trials
            runs[size].append({"seconds": seconds, "layer": scores.golden_layer,
                               "edits": trials.edits,
                               "trial_means": {t.layer: list(t.means) for t in trials.layers}})
            print(f"batch_requests {size}: {seconds:.1f} s, {trials.edits} trial edits "
                  f"({seconds / trials.edits:.2f} s each), layer {scores.golden_layer}", flush=True)
    first = runs[sizes[0]][0]
    same_pick = all(run["layer"] == first["layer"] for size in sizes for run in runs[size])
    largest_mean_difference = max(
        abs(a - b) for size in sizes for run in runs[size]
        for layer, means in run["trial_means"].items()
        for a, b in zip(means, first["trial_means"].get(layer, means)))
    summary = {size: min(run["seconds"] for run in runs[size]) for size in sizes}
    for size in sizes:
        print(f"batch_requests {size}: best of {args.rounds}: {summary[size]:.1f} s "
              f"({summary[size] / summary[sizes[0]]:.2f} x batch_requests {sizes[0]})")
    print(f"same pick at every size: {same_pick}; largest trial-mean difference: "
          f"{largest_mean_difference:.3g}")
    record = {
        "benchmark": "staged_batches", "model": args.model, "data": args.data,
        "proxy_requests": len(requests), "device": args.device,
        "torch_threads": torch.get_num_threads(), "rounds": args.rounds,
        "best_seconds": summary, "runs": runs, "same_pick": same_pick,
        "largest_trial_mean_difference": largest_mean_difference,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "torch": torch.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
