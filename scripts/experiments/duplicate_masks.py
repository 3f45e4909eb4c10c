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

import numpy as np

from low_score_masks import masked_validation_images, outside_share, paint  # beside this script
from low_score_overlap import save_rows, score_rule


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    truths, cases, threshold = masked_validation_images(args.limit, use_threshold=True)
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
        score_rule(preds, truths, f"threshold {threshold:.2f}, kept when outside >= {need:.2f}", rows,
                   threshold=threshold, outside=need)
    save_rows(args.json, len(cases), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
