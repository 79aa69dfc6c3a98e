"""Study throughput: the same R-ROME units the old way (goldenlayers 0.1's study executor, from a
git worktree of the commit before the engine) and the new way (the engine's cells on Ray workers
matched to the cores), alternated in one run so that the load of a shared machine falls on both.

    python benchmarks/study_speed.py                  # 8 requests x every second layer = 120 units
    python benchmarks/study_speed.py --requests 16 --layers 0,7,15,22,29 --out x.json

The default layers are every second one of SmolLM2's 30 because a study brute-forces every layer
(or every second one, as the campaign's ROME and EMMET runs do), and work shared between the
layers of a block of requests (the unedited pass, the first Adam step) pays off in proportion.

Each way does every unit once per round (rounds alternate old, new, old, new, ...); its figure is
units per hour over all its rounds, counting model loading and worker start-up inside the timed
span (both ways pay them once per round). ``agree`` is true only if every metric of every unit is
equal across the two ways (within ``--tolerance``, for float order across thread counts and batch
shapes). The new way optimises the values of ``--batch-requests`` requests at one layer together.

Prints the figures and writes benchmarks/results/study_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "study_speed.json"
OLD_REF = "37cd706"  # the last commit before the one engine (issue 9)

# Runs in a subprocess with the old package first on sys.path: its EditWorker edits, evaluates and
# restores one unit at a time in one process with torch's default threads, as its study did.
OLD_WAY = r"""
import json, sys, time
from goldenlayers.data import load_dataset, split
from goldenlayers.models import load_model
from goldenlayers.study.executor import EditTask, EditWorker, WorkerSpec
from goldenlayers.study.experiments import unit_seed
from goldenlayers.study.units import EditUnit
args = json.loads(sys.argv[1])
start = time.perf_counter()
dataset = load_dataset("counterfact")
test = list(split(dataset.requests, proxy_fraction=0.1, seed=0).test)[: args["requests"]]
worker = EditWorker(WorkerSpec(args["model"]), load_model(args["model"]))
metrics = tuple(m for m in dataset.metrics if m != "fluency")
rows = {}
for request in test:
    for layer in args["layers"]:
        unit = EditUnit("counterfact", "test", request.case_id, layer, "r-rome")
        record = worker.run_one(EditTask(unit, request, metrics, unit_seed(0, unit.key)))
        rows[f"{request.case_id}/{layer}"] = record.metrics
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows}))
"""


def old_way(worktree: Path, args) -> tuple[float, dict[str, dict[str, float]]]:
    env = {**os.environ, "PYTHONPATH": str(worktree), "GOLDENLAYERS_PROGRESS": "0"}
    payload = json.dumps({"model": args.model, "requests": args.requests, "layers": args.layers})
    out = subprocess.run([sys.executable, "-c", OLD_WAY, payload], env=env, check=True,
                         capture_output=True, text=True, cwd=worktree).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["rows"]


def new_way(args) -> tuple[float, dict[str, dict[str, float]]]:
    from goldenlayers.data import load_dataset, split
    from goldenlayers.editing import get_editor
    from goldenlayers.engine import CellKey, CellRunner, run_cells
    from goldenlayers.models import load_model
    from goldenlayers.study.experiments import ORDER_WINDOW_BATCHES

    start = time.perf_counter()
    dataset = load_dataset("counterfact")
    test = list(split(dataset.requests, proxy_fraction=0.1, seed=0).test)[: args.requests]
    handle = load_model(args.model, args.device)  # as the study's driver does (its tokenizer)
    cells = [(CellKey(args.model, "counterfact", "test", "r-rome", layer, str(r.case_id), 0), r)
             for r in test for layer in args.layers]
    rows = run_cells(cells, CellRunner(handle, get_editor("r-rome")), executor=args.executor,
                     workers=args.workers, num_cpus=args.workers,
                     requests_per_batch=args.batch_requests,
                     order_window=ORDER_WINDOW_BATCHES * args.batch_requests)
    return time.perf_counter() - start, {
        f"{row.key.case_id}/{row.key.layer}": {k: v for k, v in row.metrics.items() if k != "overall"}
        for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--layers", default=",".join(str(layer) for layer in range(0, 30, 2)))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--executor", default="ray")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batch-requests", type=int, default=4,
                        help="requests whose values the new way optimises together")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--old-ref", default=OLD_REF)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    args.layers = [int(x) for x in args.layers.split(",")]
    units = args.requests * len(args.layers)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.old_ref],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            seconds = {"old": [], "new": []}
            rows = {"old": {}, "new": {}}
            for round_ in range(args.rounds):
                for way in ("old", "new"):
                    took, got = old_way(worktree, args) if way == "old" else new_way(args)
                    seconds[way].append(took)
                    rows[way] = got
                    print(f"round {round_ + 1}: {way} way {took:.0f} s "
                          f"({units / took * 3600:.0f} units/h)", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT,
                           check=False, capture_output=True)
    per_hour = {way: units * args.rounds / sum(s) * 3600 for way, s in seconds.items()}
    differences = [abs(rows["old"][key].get(m, float("nan")) - rows["new"].get(key, {}).get(m, float("nan")))
                   for key in rows["old"] for m in rows["old"][key]]
    same_keys = rows["old"].keys() == rows["new"].keys() and all(
        rows["old"][k].keys() == rows["new"][k].keys() for k in rows["old"])
    agree = same_keys and all(d <= args.tolerance for d in differences)
    result = {"benchmark": "study_speed", "model": args.model, "editor": "r-rome",
              "units": units, "rounds": args.rounds, "layers": args.layers,
              "old": {"ref": args.old_ref, "executor": "local (one process, torch default threads)",
                      "seconds": seconds["old"], "units_per_hour": per_hour["old"]},
              "new": {"executor": f"{args.executor} ({args.workers} workers, 1 thread each, "
                                  f"values of {args.batch_requests} requests per batch)",
                      "seconds": seconds["new"], "units_per_hour": per_hour["new"]},
              "ratio": per_hour["new"] / per_hour["old"], "agree": agree,
              "tolerance": args.tolerance,
              "max_metric_difference": max(differences) if differences else None,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"old {per_hour['old']:.0f} units/h, new {per_hour['new']:.0f} units/h: "
          f"ratio {result['ratio']:.2f}, agree {agree} (max difference {result['max_metric_difference']})")


if __name__ == "__main__":
    main()
