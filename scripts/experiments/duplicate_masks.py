"""Experiment (validation cases only): from raw images the detector now and then boxes one
chromosome twice — a piece inside the whole, both sure — and the cell then reads a gain
(47,XXY from one X boxed twice). A crossing partner's box overlaps as much, but its *mask* (the
mask network's, from the box) shares only the crossing; a duplicate's mask lies inside the other's.
Rule: boxes from the highest score down, a box is kept only when at least ``outside`` of its own
mask lies outside the masks of the boxes already kept. Reports recall50 / precision50 / count
errors per rule (detection only; the shipped threshold).

    .venv/bin/python scripts/experiments/duplicate_masks.py [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from chromodesk.core.document import Box
from chromodesk.core.preprocess import PreprocessConfig, enhance_image, mask_regions
from chromodesk.inference.detector import Detector
from chromodesk.inference.segmenter import Segmenter
from low_score_masks import outside_share, paint  # beside this script
from low_score_overlap import save_rows, score_rule, validation_images

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    det = Detector(str(ROOT / "models" / "chromodesk-detector.json"), device="cpu")
    seg = Segmenter(device="cpu")
    cfg = PreprocessConfig(outlines=True)
    truths, cases = [], []
    for img, truth, pred in validation_images(det, args.limit, threshold=det.meta.threshold):
        truths.append(truth)
        pred = pred[np.argsort(-pred[:, 4])]
        boxes = [Box(*map(int, np.round(p[:4]))) for p in pred]
        regions = mask_regions(boxes, cfg, img.width, img.height)
        masks = seg.masks(enhance_image(img.gray, cfg), boxes, regions) if boxes else []
        cases.append((pred, masks, regions, img.gray.shape))
    rows = []
    for need in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        preds = []
        for pred, masks, regions, shape in cases:
            taken, kept = np.zeros(shape, bool), []
            for i in range(len(pred)):  # highest score first
                if not kept or outside_share(masks[i], regions[i], taken) >= need:
                    kept.append(i)
                    paint(taken, masks[i], regions[i])
            preds.append(pred[sorted(kept)])
        score_rule(preds, truths, f"threshold {det.meta.threshold:.2f}, kept when outside >= {need:.2f}", rows,
                   threshold=det.meta.threshold, outside=need)
    save_rows(args.json, len(cases), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
