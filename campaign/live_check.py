"""Live check of the staged locate's default (rule 8 of docs/findings.md, "Staged locate").

On bundled requests the campaign never used (neither edited nor in LGA's pool), it runs the staged
locate as `goldenlayers locate` does by default on 20 search requests, and brute-forces 20 other
requests at every layer to score the pick, LGA alone's pick and the copied layer 5. The evaluation
cells are appended to results/live/<model>/<data set>.jsonl as they finish (rerun to resume); the
summary goes to results/live/<model>/<data set>.summary.json. Run from the repository root:

    nice python -m campaign.live_check --model smollm2-135m --data counterfact
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from goldenlayers.data import load_dataset
from goldenlayers.editing import get_editor
from goldenlayers.engine import CellKey, ResultsFolder, build_grids, run_cells
from goldenlayers.engine.cell import CellRunner
from goldenlayers.evaluate import regret_interval
from goldenlayers.locate import get_locator
from goldenlayers.locate.search import COPIED_LAYER, TRIAL_METRICS
from goldenlayers.models import load_model
from goldenlayers.files.atomic import atomic_write_json

SEARCH, EVALUATION = 20, 20
DRAWS = 2000  # bootstrap resamples of the evaluation requests, the best layer re-picked in each


def unused_requests(results: Path, model: str, dataset: str) -> list:
    """The bundled requests the campaign neither edited nor used for LGA, in a seeded order."""
    folder = ResultsFolder(results / model)
    used = {row.key.case_id for row in folder.cells() if row.key.dataset == dataset}
    for row in folder.locate_rows():
        if row.dataset == dataset and row.method == "lga-products":
            used |= {str(c) for p in row.result["products"] for c in p["request_ids"]}
    fresh = [r for r in load_dataset(dataset).requests if str(r.case_id) not in used]
    random.Random(f"live:{model}:{dataset}").shuffle(fresh)
    return fresh


def brute_force(handle, requests, folder: ResultsFolder, dataset: str) -> np.ndarray:
    """(requests, layers, TRIAL_METRICS) at every layer, resuming from the folder's rows."""
    done = {row.key for row in folder.cells()}
    runner = CellRunner(handle, get_editor("r-rome"))
    cells = [(CellKey(handle.name, dataset, "test", "r-rome", layer, str(r.case_id), 0), r)
             for r in requests for layer in range(handle.num_layers)]
    todo = [cell for cell in cells if cell[0] not in done]
    if todo:
        runner.pre_edit(requests)
        run_cells(todo, runner, on_row=folder.add_cell, label="evaluation cells")
    grid = build_grids(r for r in folder.cells() if r.key.dataset == dataset)[(dataset, "test",
                                                                               "r-rome")]
    return np.stack([np.nan_to_num(grid.values[:, :, grid.metrics.index(m)]) for m in TRIAL_METRICS],
                    axis=-1)


def regret(scores: np.ndarray, layer: int) -> dict[str, list[float]]:
    """Per metric: the regret and its bootstrap 95% interval, the best layer re-picked in each
    resample of the evaluation requests."""
    found = {}
    for k, metric in enumerate(TRIAL_METRICS):
        interval = regret_interval(scores[:, :, k], layer, resamples=DRAWS)
        found[metric] = [interval.mean, interval.low, interval.high]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="only brute-force the evaluation requests (resumable)")
    arguments = parser.parse_args()
    handle = load_model(arguments.model, device=arguments.device)
    fresh = unused_requests(arguments.results, handle.name, arguments.data)
    search, evaluation = fresh[:SEARCH], fresh[SEARCH: SEARCH + EVALUATION]
    out = arguments.results / "live" / handle.name
    out.mkdir(parents=True, exist_ok=True)
    scores = brute_force(handle, evaluation, ResultsFolder(out), arguments.data)
    if arguments.evaluate_only:
        return
    staged = get_locator("staged", dataset=arguments.data).locate(handle, search)
    lga = get_locator("lga").locate(handle, search)
    picks = {"staged": staged.golden_layer, "lga": lga.golden_layer, "copied": COPIED_LAYER}
    atomic_write_json(out / f"{arguments.data}.summary.json", {
        "model": handle.name, "dataset": arguments.data, "search_requests": len(search),
        "evaluation_requests": len(scores), "picks": picks,
        "regret": {name: regret(scores, layer) for name, layer in picks.items()},
        "best_layer": {m: int(scores[:, :, k].mean(0).argmax()) for k, m in enumerate(TRIAL_METRICS)},
        "staged": staged.to_dict(), "search_case_ids": [str(r.case_id) for r in search]})
    print(picks, (out / f"{arguments.data}.summary.json"))


if __name__ == "__main__":
    main()
