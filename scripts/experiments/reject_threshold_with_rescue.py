"""Experiment (validation cases only): the "not a chromosome" threshold was chosen so that at most
0.2% of the validation chromosomes are rejected, before the cell had a say (a rejected box its cell
needs now comes back). A rejected real chromosome now costs less, so a lower threshold may reject
more empty boxes at the same cost. For each threshold: the share of the validation boxes with
nothing inside that it rejects (the rows ``chromodesk-train reject`` cached, scored by the shipped
network), and the product's path on the validation cells (given boxes, mask network, cell context,
rescue, assignment) per chromosome, against no rejection at all: the cost in points that the issue
bounds (< 0.3).

    .venv/bin/python scripts/experiments/reject_threshold_with_rescue.py --rows ~/.cache/chromodesk/reject-rows-e1abfc8e7d30.npz \
        [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from chromodesk.core.karyotype import analyse_cell
from chromodesk.core.preprocess import preprocess_cell
from chromodesk.inference.bundle import DEFAULT_MODEL
from chromodesk.inference.classifier import Classifier
from chromodesk.pipeline import open_cell, segment_of
from training.data import _voc_images, case_of_image
from training.reject import reject_report, reject_scores

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"
THRESHOLDS = (1.0, 0.99, 0.9811511635780336, 0.97, 0.96, 0.95, 0.93, 0.9, 0.85, 0.8)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True, help="the validation rows cached by chromodesk-train reject (.npz)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    clf = Classifier(str(DEFAULT_MODEL), device="cpu", orientation=False)
    split = json.loads(DEFAULT_MODEL.with_suffix(".split.json").read_text())
    images = [i for i in _voc_images(DATA) if split.get(f"{DATA.name}/{case_of_image(i.stem)}") == "val"]
    images = images[: args.limit] if args.limit else images
    with np.load(args.rows, allow_pickle=False) as z:
        rows = {k: z[k] for k in z.files}
    if not set(rows["image"].tolist()) <= {p.stem for p in images} and not args.limit:
        raise SystemExit(f"{args.rows}: not the validation images of {DEFAULT_MODEL.name}'s split")
    scores = reject_scores(clf.model.reject, rows, True)
    cells = []
    for path in tqdm(images, mininterval=10):
        doc, image, _ = open_cell(path, detect=False)
        records = list(doc)
        crops = preprocess_cell(image.gray, [r.box for r in records], clf.preprocess, segment=segment_of(clf))
        probs, reject_p = clf.predict_each_with_reject(crops)
        cells.append((probs, reject_p, crops.features, [r.file_label for r in records]))
    out = []
    for t in THRESHOLDS:
        clf.meta.reject = replace(clf.meta.reject, threshold=t)  # what finish_cell reads
        right, all_right = [], []
        for probs, reject_p, feats, truth in cells:
            final, rejected = clf.finish_cell(probs, reject_p, feats)
            keep = np.flatnonzero(~rejected)
            labels = [None] * len(truth)
            for i, lab in zip(keep, analyse_cell(final[keep]).assigned if len(keep) else []):
                labels[i] = lab
            ok = [labels[i] == truth[i] for i in range(len(truth)) if truth[i] is not None]
            right += ok
            all_right.append(all(ok))
        rep = reject_report(scores, rows, t)
        row = {"threshold": t, "accuracy": float(np.mean(right)), "cells_all_right": float(np.mean(all_right)),
               "background_rejected": rep["negatives"]["background"]["rejected"],
               "nothing_inside_rejected": rep["nothing_inside_rejected"],
               "chromosome_rows_rejected": rep["chromosomes_rejected"]}
        out.append(row)
        print(json.dumps(row), flush=True)
    base = out[0]["accuracy"]
    for row in out:
        row["cost_points"] = 100 * (base - row["accuracy"])
    if args.json:
        Path(args.json).write_text(json.dumps({"split": "val", "images": len(images), "rows": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
