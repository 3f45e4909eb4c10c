"""Same weights, two denoising settings: does the cheaper Non-Local Means keep accuracy?

    python scripts/compare_denoise.py [--model BUNDLE] [--data DIR] [--search 21 9]

For each search-window size it evaluates the bundle on the case-disjoint test split
with only ``preprocess.nlm_search`` changed (a temporary copy of the bundle's JSON; the
weights are shared), and prints one JSON line per setting: accuracy alone and with
cell-level assignment. This is the before/after for the preprocessing speed-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chromodesk.inference.bundle import DEFAULT_MODEL, bundle_paths  # noqa: E402
from training.evaluate import bundle_split_path, evaluate  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"))
    p.add_argument("--search", type=int, nargs="+", default=[21, 9])
    args = p.parse_args(argv)
    json_path, weights = bundle_paths(args.model)
    split = bundle_split_path(json_path)
    if split is None:
        print(f"compare_denoise: {json_path}: no split file beside the bundle", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(weights, Path(tmp) / weights.name)  # one copy shared by every setting
        for search in args.search:
            meta = json.loads(json_path.read_text())
            meta["preprocess"]["nlm_search"] = search
            meta["weights_file"] = weights.name
            copy = Path(tmp) / f"search{search}.json"
            copy.write_text(json.dumps(meta))
            r = evaluate(str(copy), [args.data], split="test", split_file=str(split), quiet=True)
            print(json.dumps({"model_id": r["model_id"], "nlm_search": search, "n_chromosomes": r["n_chromosomes"],
                              "accuracy": round(r["accuracy"], 4), "assigned_accuracy": round(r["assigned_accuracy"], 4),
                              "cell_accuracy": round(r["cell_accuracy"], 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
