"""LGA's gradient products on each campaign pair's test requests, for the replay (issue 28).

The study now stores products on the test split too (every weights x old-answer source, four
passes); for pairs run before that, this adds the test split's products of the default reading
alone (the edit matrix against the data set's old answer: one pass), which is all the replay reads.
Appends one locate row per pair to results/<model>/<data set>.locate.jsonl; a pair that has test
products already is skipped. Run from the repository root:

    python -m campaign.test_products results
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from goldenlayers.data import load_dataset
from goldenlayers.engine import LocateRow, ResultsFolder
from goldenlayers.locate import compute_products
from goldenlayers.locate.readings import DEFAULT_READING
from goldenlayers.models import load_model

PAIRS = (("smollm2-135m", "wikirecent"), ("smollm2-135m", "wikibio"),
         ("gemma3-270m", "counterfact"), ("gemma3-270m", "zsre"),
         ("smollm2-135m", "counterfact"), ("smollm2-135m", "zsre"),
         ("smollm2-135m", "wikicounterfact"))


def add_test_products(results: Path, model: str, dataset: str, handle=None) -> None:
    folder = ResultsFolder(results / model)
    rows = folder.locate_rows()
    if any(r.dataset == dataset and r.split == "test" and r.method == "lga-products" for r in rows):
        print(f"{model} x {dataset}: test products present", flush=True)
        return
    case_ids = sorted({c.key.case_id for c in folder.cells()
                       if c.key.dataset == dataset and c.key.split == "test"})
    by_id = {str(r.case_id): r for r in load_dataset(dataset).requests}
    requests = [by_id[case] for case in case_ids]
    seed = next(r.seed for r in rows if r.dataset == dataset)
    start = time.perf_counter()
    products = compute_products(handle, requests, weights_set=(DEFAULT_READING.weights,),
                                old_answers=(DEFAULT_READING.old_answer,))
    note = (f"test split added for the replay: {DEFAULT_READING.weights} x "
            f"{DEFAULT_READING.old_answer} only (the default reading's products)")
    folder.add_locate(LocateRow(model, dataset, "test", "lga-products", seed,
                                {"products": [p.to_dict() for p in products]},
                                time.perf_counter() - start, (note,)))
    print(f"{model} x {dataset}: {len(requests)} test requests in "
          f"{time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    arguments = parser.parse_args()
    handles = {}
    for model, dataset in PAIRS:
        if model not in handles:
            handles = {model: load_model(model)}  # one model in memory at a time
        add_test_products(arguments.results, model, dataset, handles[model])


if __name__ == "__main__":
    main()
