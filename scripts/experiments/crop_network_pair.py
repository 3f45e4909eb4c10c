"""Experiment (validation cases only): do two crop networks that read *different* crops help
where two alike ones did not (``crop_network_average.py``)? The shipped network reads crops cut
inside the mask network's outline; the one before it (git 3c2fe5c, ``runs/ens/prev.json``) read
threshold crops, neighbours included. Each is run on its own crops (four flips, as shipped) for
the validation chromosomes of the three sources; reports each alone and their average (equal
weights, and geometric), per source. Crop network only: the cell stages come after.

    git show 3c2fe5c:models/chromodesk-resnet18.json > runs/ens/prev.json
    git show 3c2fe5c:models/chromodesk-resnet18.safetensors > runs/ens/chromodesk-resnet18.safetensors  # the name its JSON gives
    .venv/bin/python scripts/experiments/crop_network_pair.py --base <outline bundle> [--other B ...] [--json OUT]

The table in docs/crop-network-pair-val.json was made with the outline-crop bundle shipped before
the pair as ``--base`` (``git show db82bea:models/chromodesk-resnet18.{json,safetensors,split.json}``
into a folder of their own).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from chromodesk.inference.classifier import Classifier
from training.data import load_data
from training.evaluate import bundle_split, select

ROOT = Path(__file__).resolve().parents[2]
DATA = [str(ROOT.parent / "shared" / "datasets" / n) for n in
        ("tseng2023-gband-metaphases", "gband-karyogram-chromosomes", "bioimlab-qband-chromosomes")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", nargs="+", default=[str(ROOT / "runs" / "ens" / "prev.json")],
                    help="one or more other crop-network bundles (each on its own crops)")
    ap.add_argument("--base", default=str(ROOT / "models" / "chromodesk-resnet18.json"),
                    help="the network the others are averaged with (its split is used); a bundle with a companion "
                         "counts as one member, itself two networks averaged")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    shipped = Path(args.base)
    split = bundle_split(shipped)
    probs, keys = {}, {}
    others = [(f"other{i + 1}" if len(args.other) > 1 else "other", Path(o)) for i, o in enumerate(args.other)]
    for name, path in (("shipped", shipped), *others):
        clf = Classifier(path, device="cpu")
        data, _ = load_data(DATA, clf.preprocess, quiet=True)
        data = select(data, split, "val")
        probs[name] = clf.predict_arrays(data.images, data.features, companion=data.companion)
        keys[name] = (data.labels, data.cells, data.source)
        print(name, len(data), flush=True)
    for name, _ in others:
        for a, b in zip(keys["shipped"], keys[name]):
            if not np.array_equal(a, b):
                raise SystemExit("the crop sets do not list the same chromosomes in the same order")
    labels, _, source = keys["shipped"]
    a = probs["shipped"]
    variants = {"shipped": a}
    if len(others) == 1:
        b = probs["other"]
        variants.update({"other": b, "mean": (a + b) / 2, "geometric": np.exp((np.log(a + 1e-9) + np.log(b + 1e-9)) / 2),
                         "mean 2:1": (2 * a + b) / 3})
    else:
        import itertools

        names = ["shipped"] + [n for n, _ in others]
        variants.update({n: probs[n] for n, _ in others})
        for k in range(2, len(names) + 1):
            for combo in itertools.combinations(names, k):
                variants["mean " + "+".join(combo)] = sum(probs[n] for n in combo) / k
    score_variants(variants, labels, source, args.json)
    return 0


def score_variants(variants: dict[str, np.ndarray], labels: np.ndarray, source: np.ndarray, json_path: str | None) -> None:
    """Top-1 accuracy of each variant's probabilities, over all and per source: printed, and
    written to ``json_path`` when given."""
    rows = {}
    for name, p in variants.items():
        right = p.argmax(1) == labels
        rows[name] = {"all": float(right.mean()),
                      **{s: float(right[source == s].mean()) for s in sorted(set(source.tolist()))}}
        print(f"{name:40s} " + "  ".join(f"{k} {v:.4f}" for k, v in rows[name].items()), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({"split": "val", "n": int(len(labels)), "rows": rows}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
