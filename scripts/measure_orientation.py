"""Which end is up in the karyogram, measured end to end on held-out karyogram crops.

Each crop of a test case (the orientation network's own split: by case, seed 0) stands p-arm up,
as a technician arranged it. Every cell's crops are turned by known random angles and laid out
on a white canvas: a synthetic metaphase with a box per chromosome. That goes through the
product's path (the classifier's crops, the shipped orientation network on them, the angle the
karyogram turns each chromosome by, from its own mask and the stored angle, and the 180-degree
turn where P(p-arm up) of the true class is below 0.5). Right when the random turn and the
karyogram's turns add up to less than 90 degrees from the technician's upright: the p-arm is up.
The karyogram without the network (its mask's moment angle only, as before) is the baseline.

    .venv/bin/python scripts/measure_orientation.py [--cells 40] [--json docs/orientation-karyogram.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import cv2
import math
import numpy as np

from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.document import Box, Karyotype
from chromodesk.core.export import chromosome_piece, same_end_up
from chromodesk.core.labels import CLASS_INDEX, normalize_label
from chromodesk.core.preprocess import PreprocessConfig, enhance_image, long_axis_angle, preprocess_cell
from chromodesk.inference.orientation import Orienter
from chromodesk.pipeline import orient_crops
from training.data import split_groups

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "gband-karyogram-chromosomes"
SLOT = 200  # canvas pixels per chromosome, room for the longest turned crop


def test_cells(data: Path, seed: int = 0) -> dict[str, list[tuple[Path, str]]]:
    """cell -> [(crop, label)] of the test cases."""
    with open(data / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    split = split_groups(np.array([r["case"] for r in rows]), seed)
    cells: dict[str, list] = defaultdict(list)
    for r in rows:
        if split[r["case"]] == "test":
            cells[r["cell"]].append((data / r["path"], normalize_label(r["label"])))
    return dict(sorted(cells.items()))


def synthetic_cell(crops: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[Box], list[float]]:
    """The crops turned by random angles on a white canvas, a tight box around each, the angles."""
    cols = int(np.ceil(np.sqrt(len(crops))))
    canvas = np.full((SLOT * ((len(crops) + cols - 1) // cols), SLOT * cols), 255, np.uint8)
    boxes, angles = [], [float(a) for a in rng.uniform(0, 360, len(crops))]
    for i, (crop, angle) in enumerate(zip(crops, angles)):
        h, w = crop.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[:, 2] += (SLOT / 2 - w / 2, SLOT / 2 - h / 2)
        turned = cv2.warpAffine(crop, m, (SLOT, SLOT), flags=cv2.INTER_LINEAR, borderValue=255)
        y, x = divmod(i, cols)
        canvas[y * SLOT : (y + 1) * SLOT, x * SLOT : (x + 1) * SLOT] = turned
        ys, xs = np.nonzero(turned < 230)
        boxes.append(Box(x * SLOT + int(xs.min()), y * SLOT + int(ys.min()), x * SLOT + int(xs.max()) + 1,
                         y * SLOT + int(ys.max()) + 1))
    return canvas, boxes, angles


def p_arm_up(placed: float, karyogram: float, turned: bool) -> bool:
    """The crop turned by ``placed``, then by the karyogram's upright turn (``rotate_upright``:
    angle - 90, the same rotation convention) and 180 more when ``turned``: back within 90
    degrees of the technician's upright."""
    return math.cos(math.radians(placed + karyogram - 90.0 + (180.0 if turned else 0.0))) > 0


def measure(cells: dict, orienter: Orienter, limit: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    cfg = PreprocessConfig()
    classifier = SimpleNamespace(preprocess=cfg, orienter=orienter)
    right = {"network": 0, "moment angle only": 0}
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    total, t0 = 0, time.time()
    for cell, items in list(cells.items())[:limit]:
        crops = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p, _ in items]
        gray, boxes, placed = synthetic_cell(crops, rng)
        ends = orient_crops(gray, boxes, preprocess_cell(gray, boxes, cfg), classifier)
        doc = Karyotype(cell, "", gray.shape[1], gray.shape[0])
        for box, (_, label), (angle, p_up) in zip(boxes, items, ends):
            doc.add(box, file_label=label, angle=angle, p_up=p_up)
        enhanced = enhance_image(gray, cfg)
        for r, turn, (_, label) in zip(doc, placed, items):
            moment = long_axis_angle(chromosome_piece(enhanced, 255 - gray, r.box, cfg)[1])  # as chromosome_ink
            ok = p_arm_up(turn, same_end_up(moment, r.angle), r.shown_turned)
            right["network"] += ok
            right["moment angle only"] += p_arm_up(turn, moment, False)
            per_class[label][0] += ok
            per_class[label][1] += 1
            total += 1
    return {"data": DATA.name, "split": "test cases (by case, seed 0: the network's held-out cases)",
            "cells": min(limit, len(cells)), "chromosomes": total,
            "p_arm_up": {k: round(v / max(total, 1), 4) for k, v in right.items()},
            "p_arm_up_per_class": {k: round(a / n, 3) for k, (a, n) in sorted(per_class.items(), key=lambda kv: CLASS_INDEX[kv[0]])},
            "orientation_model": orienter.model_id, "seconds": round(time.time() - t0, 1),
            "note": "each crop turned by a known random angle in a synthetic cell; right when that turn and the "
                    "karyogram's (its mask's upright turn, kept the stored crop's way round, plus 180 degrees where "
                    "P(p-arm up) of the true class < 0.5) leave the crop within 90 degrees of the technician's upright"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(test_cells(args.data), Orienter(), args.cells)
    print(json.dumps(result, indent=1))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
