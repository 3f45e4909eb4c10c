"""Experiment (validation cases only): would more test-time views help the crop network? It is
trained with flips, small turns (upright crops), +-10% scale and small shifts, and averaged over
the four flips at inference. Here: the four flips, and the four flips again at 0.93x and 1.07x
zoom, and with a +-6 degree turn, alone and together; crop-network top-1 on the validation crops
of the three sets, and with the cell-context stage (the app's classifier).

    .venv/bin/python scripts/experiments/crop_tta_views.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from chromodesk.inference.bundle import DEFAULT_MODEL
from chromodesk.inference.classifier import Classifier
from chromodesk.inference.network import to_input
from training.data import cell_groups, load_data, split_index

ROOT = Path(__file__).resolve().parents[2]
SETS = ["tseng2023-gband-metaphases", "gband-karyogram-chromosomes", "bioimlab-qband-chromosomes"]


def warp(x: torch.Tensor, scale: float, degrees: float) -> torch.Tensor:
    """Zoom by ``scale`` (> 1: larger) and turn by ``degrees`` about the centre; background 0 (the
    crops' background after ``to_input`` is its lowest value, so pad with the batch minimum)."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a) / scale, -math.sin(a) / scale, 0.0],
                          [math.sin(a) / scale, math.cos(a) / scale, 0.0]], dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - low, grid, align_corners=False, padding_mode="zeros") + low


@torch.inference_mode()
def flips(model, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    views = torch.cat([x, x.flip(3), x.flip(2), x.flip((2, 3))])
    return torch.softmax(model(views, f.repeat(4, 1)).float(), 1).view(4, len(x), -1).mean(0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    clf = Classifier(str(DEFAULT_MODEL), device="cpu", orientation=False, segmentation=False)
    data, _ = load_data([str(ROOT.parent / "shared" / "datasets" / s) for s in SETS], clf.preprocess, quiet=True)
    split = json.loads(DEFAULT_MODEL.with_suffix(".split.json").read_text())
    rows = np.flatnonzero(split_index(data, split, "val"))
    transforms = {"flips": (1.0, 0.0), "zoom_out": (0.93, 0.0), "zoom_in": (1.07, 0.0), "turn_left": (1.0, 6.0),
                  "turn_right": (1.0, -6.0)}
    probs = {k: [] for k in transforms}
    for s in range(0, len(rows), 256):
        r = rows[s : s + 256]
        x = to_input(torch.from_numpy(data.images[r]))
        f = torch.from_numpy(data.features[r])
        for k, (scale, deg) in transforms.items():
            probs[k].append(flips(clf.model, x if k == "flips" else warp(x, scale, deg), f).numpy())
        print(f"{s + len(r)} / {len(rows)}", end="\r", flush=True)
    probs = {k: np.concatenate(v) for k, v in probs.items()}
    labels = data.labels[rows]
    groups = cell_groups(data.source[rows], data.cells[rows])
    combos = {"flips (shipped)": ["flips"], "flips + zooms": ["flips", "zoom_out", "zoom_in"],
              "flips + turns": ["flips", "turn_left", "turn_right"], "all": list(transforms)}
    out = []
    for name, keys in combos.items():
        p = np.mean([probs[k] for k in keys], axis=0)
        ctx = p.copy()
        for g in groups:
            ctx[g] = clf.in_context(p[g], data.features[rows][g])
        row = {"views": name, "crop_accuracy": float((p.argmax(1) == labels).mean()),
               "classifier_accuracy": float((ctx.argmax(1) == labels).mean())}
        for src in SETS:
            sel = data.source[rows] == src
            row[src] = float((ctx[sel].argmax(1) == labels[sel]).mean())
        out.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"split": "val", "chromosomes": int(len(rows)), "rows": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
