"""Does separating each chromosome from its neighbours help the classifier? The product's own
path (``pipeline.open_cell`` + ``classify_document``, given boxes, cell assignment) on the test
cases of the Tseng metaphases, with and without the mask network, per chromosome, for
chromosomes whose box another box covers by >= 40%, and per cell (every chromosome right).

    .venv/bin/python scripts/separation_eval.py --data ../shared/datasets/tseng2023-gband-metaphases \
        [--segmenter models/chromodesk-masks.json] [--limit N] [--json docs/separation-test.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chromodesk.core.atomic import atomic_write_text  # noqa: E402
from chromodesk.core.document import Box  # noqa: E402
from chromodesk.inference.bundle import DEFAULT_MODEL  # noqa: E402
from chromodesk.inference.classifier import Classifier  # noqa: E402
from chromodesk.inference.segmenter import DEFAULT_SEGMENTER  # noqa: E402
from chromodesk.pipeline import classify_document, open_cell  # noqa: E402
from training.data import _voc_images, case_of_image  # noqa: E402

COVERED = 0.4


def covered_fraction(boxes: list[Box], width: int, height: int) -> list[float]:
    """Per box: the share of its area inside at least one other box."""
    count = np.zeros((height, width), np.int16)
    for b in boxes:
        count[b.ymin : b.ymax, b.xmin : b.xmax] += 1
    return [float((count[b.ymin : b.ymax, b.xmin : b.xmax] > 1).mean()) if b.area else 0.0 for b in boxes]


def run(images: list[Path], classifier: Classifier, quiet: bool) -> list[dict]:
    rows = []
    for path in tqdm(images, desc=classifier.segmenter.model_id if classifier.segmenter else "threshold", disable=quiet):
        doc, image, _ = open_cell(path, detect=False)
        classify_document(doc, image.gray, classifier)
        records = [r for r in doc if r.file_label is not None]
        cover = covered_fraction([r.box for r in records], doc.width, doc.height)
        for r, c in zip(records, cover):
            rows.append({"image": path.stem, "covered": c, "right": r.label == r.file_label})
    return rows


def summary(rows: list[dict]) -> dict:
    def acc(sel):
        sel = list(sel)
        return {"accuracy": round(float(np.mean([r["right"] for r in sel])), 4) if sel else None, "n": len(sel)}

    cells: dict[str, bool] = {}
    for r in rows:
        cells[r["image"]] = cells.get(r["image"], True) and r["right"]
    return {"all": acc(rows), f"covered_ge_{COVERED}": acc(r for r in rows if r["covered"] >= COVERED),
            "not_covered": acc(r for r in rows if r["covered"] == 0),
            "cells_all_right": round(float(np.mean(list(cells.values()))), 4), "n_cells": len(cells)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--segmenter", default=str(DEFAULT_SEGMENTER))
    p.add_argument("--split", default="test")
    p.add_argument("--candidate", default=None,
                   help="also a bundle trained on outline crops (chromodesk-train fit --outlines), with the mask network")
    p.add_argument("--no-reject", action="store_true",
                   help="leave every bundle's 'not a chromosome' head out (to compare bundles that lack one)")
    p.add_argument("--skip-shipped", action="store_true", help="only the candidate")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    root = Path(args.data)
    split = json.loads(Path(args.model).with_suffix("").with_suffix(".split.json").read_text())
    images = [i for i in _voc_images(root) if split.get(f"{root.name}/{case_of_image(i.stem)}") == args.split]
    if args.limit:
        images = images[: args.limit]
    result = {"data": root.name, "split": f"{args.split} cases of the classifier's case split", "images": len(images),
              "covered_definition": f"box at least {COVERED:.0%} inside other boxes", "model": Path(args.model).name}
    runs = [] if args.skip_shipped else [("threshold", args.model, False), ("mask_network", args.model, args.segmenter)]
    if args.candidate:
        runs.append(("candidate_outline_crops", args.candidate, args.segmenter))
    result["reject_head"] = not args.no_reject
    for name, model, seg in runs:
        t0 = time.time()
        classifier = Classifier(model, orientation=False, segmentation=seg)
        if args.no_reject:
            classifier.model.reject = None
        rows = run(images, classifier, args.quiet)
        result[name] = summary(rows) | {"seconds": round(time.time() - t0, 1), "model": Path(model).name,
                                        "crops_cut_by_outlines": classifier.preprocess.outlines and bool(seg)}
        print(name, json.dumps(result[name]), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
