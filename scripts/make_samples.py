"""Rebuild the bundled samples in goldenlayers/data/samples/ from the shared benchmark files.

    python scripts/make_samples.py [--shared ../shared/data] [--size 200] [--seed 0]

Each sample is `size` records drawn with `random.Random(seed).sample` from one shared file, kept in
file order and in the file's original schema (so the same loaders read samples and full files).
The chosen indices are written to samples/manifest.json so every sample record can be traced back.
The WikiText-2 raw test text is copied unchanged. Running it twice gives identical bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "goldenlayers" / "data" / "samples"

# bundled name -> shared file (relative to the shared data folder)
SOURCES = {
    "counterfact": "counterfact/counterfact-edit.json",
    "zsre": "zsre/zsre_mend_eval_portability_gpt4.json",
    "wikibio": "knowedit_wikibio/wikibio-test-all.json",
    "wikicounterfact": "knowedit_wiki_counterfact/test_cf.reconstructed.json",
    "wikirecent": "knowedit_wiki_recent/recent_train.json",
}
CORPUS = "corpus/wikitext-2-raw_wiki.test.raw"


def choose(n_records: int, size: int, seed: int) -> list[int]:
    """Indices of the sample: seeded, without replacement, in file order."""
    return sorted(random.Random(seed).sample(range(n_records), min(size, n_records)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    SAMPLES.mkdir(parents=True, exist_ok=True)
    manifest = {"seed": args.seed, "size": args.size, "samples": {}}
    for name, relative in SOURCES.items():
        records = json.loads((args.shared / relative).read_text(encoding="utf-8"))
        indices = choose(len(records), args.size, args.seed)
        sample = [records[i] for i in indices]
        (SAMPLES / f"{name}.json").write_text(
            json.dumps(sample, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        manifest["samples"][name] = {"source": relative, "source_records": len(records),
                                     "indices": indices}
        print(f"{name}: {len(sample)} of {len(records)} records from {relative}")
    shutil.copyfile(args.shared / CORPUS, SAMPLES / Path(CORPUS).name)
    manifest["corpus"] = {"source": CORPUS, "file": Path(CORPUS).name}
    (SAMPLES / "manifest.json").write_text(json.dumps(manifest) + "\n", encoding="utf-8")
    total = sum(path.stat().st_size for path in SAMPLES.iterdir() if path.is_file())
    print(f"samples: {total / 1e6:.2f} MB in {SAMPLES}")


if __name__ == "__main__":
    main()
