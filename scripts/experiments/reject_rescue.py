"""Experiment (validation cases only): should the cell have a say in "not a chromosome"? The app
rejects a box when the reject network's probability passes its threshold, then assigns the rest.
Here a rejected box is taken back when the cell's joint assignment gains more from it (it fills a
slot left empty) than the reject network's evidence above the threshold, in nats:
``cost(without) - cost(with) > logit(p) - logit(threshold)``, boxes tried from the least sure.
The product's path otherwise (given boxes, mask network, cell assignment; a rejected real
chromosome counts as wrong), per chromosome and per cell.

    .venv/bin/python scripts/experiments/reject_rescue.py [--split val] [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from chromodesk.core.karyotype import assign, logit, rescue_rejected
from chromodesk.inference.bundle import DEFAULT_MODEL
from chromodesk.inference.classifier import Classifier
from chromodesk.pipeline import classify_document, open_cell
from training.data import _voc_images, case_of_image

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    split = json.loads(DEFAULT_MODEL.with_suffix(".split.json").read_text())
    images = [i for i in _voc_images(DATA) if split.get(f"{DATA.name}/{case_of_image(i.stem)}") == args.split]
    images = images[: args.limit] if args.limit else images
    classifier = Classifier(str(DEFAULT_MODEL), orientation=False)
    t = classifier.reject_threshold
    scales = (None, 0.5, 1.0, 2.0)  # None: the app as shipped
    right = {s: [] for s in scales}
    cells = {s: [] for s in scales}
    rescues = {s: [0, 0] for s in scales}  # (real chromosomes taken back, other boxes taken back)
    for path in tqdm(images, mininterval=10):
        doc, image, _ = open_cell(path, detect=False)
        classify_document(doc, image.gray, classifier)
        records = list(doc)
        probs = np.array([r.probabilities for r in records])
        reject_p = np.array([r.reject_probability for r in records])
        rejected = np.array([r.auto_rejected for r in records])
        truth = [r.file_label for r in records]
        for s in scales:
            margin = np.array([s * (logit(p) - logit(t)) for p in reject_p]) if s is not None else None
            rej = rejected if s is None else rescue_rejected(probs, margin, rejected)
            keep = np.flatnonzero(~rej)
            labels = [None] * len(records)
            for i, lab in zip(keep, assign(probs[keep])[0] if len(keep) else []):
                labels[i] = lab
            ok = [truth[i] is not None and labels[i] == truth[i] for i in range(len(records)) if truth[i] is not None]
            right[s] += ok
            cells[s].append(all(ok))
            back = rejected & ~rej
            rescues[s][0] += int(sum(back[i] for i in range(len(records)) if truth[i] is not None))
            rescues[s][1] += int(sum(back[i] for i in range(len(records)) if truth[i] is None))
    result = {"split": args.split, "images": len(images), "rows": []}
    for s in scales:
        row = {"scale": s, "accuracy": float(np.mean(right[s])), "cells_all_right": float(np.mean(cells[s])),
               "real_taken_back": rescues[s][0], "other_taken_back": rescues[s][1]}
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
