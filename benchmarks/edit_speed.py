"""Seconds per R-ROME edit with the fast value optimisation and without it (issue 3).

    python benchmarks/edit_speed.py                       # smollm2-135m, layer 15, 8 CounterFact requests
    python benchmarks/edit_speed.py --layer 10 --threads 1

Fast: the blocks below the edited layer and the columns before the subject run once per request
(models/partial.py), the vocabulary head only at the scored positions. Plain (``fast=False``): the
whole model with full-vocabulary logits at every position, on every step, as reference
implementations do. Both use the same config (this model's defaults), so they take the same steps;
the two are run alternately, request by request, so that the load of a shared machine falls on both
alike. The time of an edit is ``EditResult.seconds`` (keys, value optimisation and update; the
context templates are sampled once beforehand, as a study's first edit would). The largest
difference between the two paths' weight updates is printed too.

Prints the figures and writes benchmarks/results/edit_speed.json.
Targets: fast at least 3x faster than plain, and under 5 s per edit on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from goldenlayers.data import load_dataset
from goldenlayers.editing import EditCache, get_editor
from goldenlayers.editing.templates import context_templates
from goldenlayers.models import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "edit_speed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    handle = load_model(args.model, device=args.device)
    requests = load_dataset("counterfact").requests[: args.requests]
    cache = EditCache()
    editors = {fast: get_editor("r-rome", cache=cache, fast=fast) for fast in (True, False)}
    config = editors[True].config_for(handle)
    context_templates(handle, config.n_context_templates, config.context_template_length,
                      config.template_seed, cache)  # once per model, outside the timings
    load_before = os.getloadavg()
    seconds: dict[bool, list[float]] = {True: [], False: []}
    steps, max_delta_difference = [], 0.0
    for request in requests:
        results = {fast: editor.compute(handle, [request], args.layer) for fast, editor in editors.items()}
        for fast, result in results.items():
            seconds[fast].append(result.seconds)
        steps.append(len(results[True].edits[0].losses))
        difference = (results[True].updates[0].delta() - results[False].updates[0].delta()).abs().max()
        max_delta_difference = max(max_delta_difference, float(difference))
        print(f"{request.case_id:>6}  fast {results[True].seconds:6.2f} s   plain "
              f"{results[False].seconds:6.2f} s   steps {steps[-1]}", flush=True)
    fast, plain = statistics.mean(seconds[True]), statistics.mean(seconds[False])
    report = {
        "model": args.model, "layer": args.layer, "editor": "r-rome", "requests": len(requests),
        "config": config.to_dict(), "seconds_per_edit_fast": fast, "seconds_per_edit_plain": plain,
        "speedup": plain / fast, "seconds_fast": seconds[True], "seconds_plain": seconds[False],
        "steps": steps, "max_weight_delta_difference": max_delta_difference,
        "targets": {"speedup_at_least": 3.0, "fast_seconds_under": 5.0},
        "meets_targets": {"speedup": plain / fast >= 3.0, "fast_seconds": fast < 5.0},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "device": args.device,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"R-ROME on {args.model} at layer {args.layer}, {len(requests)} CounterFact requests: "
          f"fast {fast:.2f} s per edit, plain {plain:.2f} s per edit, {plain / fast:.1f}x faster; "
          f"largest difference of the updates {max_delta_difference:.2e}; load average "
          f"{load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
