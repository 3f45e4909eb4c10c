"""Experiment (validation cases only): does the shipped detector find more chromosomes when its
maps are averaged over more views of the image? The detector was trained with flips, quarter
turns and +-25% scale, but the app averages only the picture and its three flips. Variants:

- ``flips4``: what ships (identity, the three flips);
- ``dihedral8``: the four flips of the picture and of its transpose (quarter turns included);
- ``flips4+zoomZ`` / ``dihedral8+zoomZ``: the heatmap of a second pass at ``Z`` x the detector's
  scale, sampled at the first pass's cells and averaged with it (sizes and offsets from the
  first pass, whose grid the peaks come from).

Reports AP50, recall / precision / count errors at the shipped threshold and at the best-F1
threshold, and milliseconds per image (one thread), detection only.

    .venv/bin/python scripts/experiments/detector_tta_views.py [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from chromodesk.core.detector_input import OUTPUT_STRIDE, detector_input, pad_to_multiple
from chromodesk.core.imaging import load_gray
from chromodesk.core.voc import find_annotation, read_voc
from chromodesk.inference.detector import Detector, _logit, flip_averaged
from chromodesk.inference.detector_net import decode
from training.detect_eval import _split_images
from training.detect_metrics import at_threshold, average_precision, best_threshold

ROOT = Path(__file__).resolve().parents[2]
FLOOR = 0.05


def heat_at(model, gray: np.ndarray, meta, zoom: float, grid: tuple[int, int], transposes: bool) -> torch.Tensor:
    """The heatmap probability of a pass at ``zoom`` x the detector's scale, sampled at the
    centres of the base pass's output cells (``grid`` = its (H, W))."""
    x = detector_input(gray, meta.scale * zoom, meta.polarity)
    heat = torch.sigmoid(flip_averaged(model, torch.from_numpy(pad_to_multiple(x))[None, None], transposes)[0])
    h, w = grid
    hz, wz = heat.shape[-2:]
    # base cell j's centre is at (j + 0.5) * stride / base scale image px; at this zoom that is
    # (j + 0.5) * zoom cells; grid_sample's -1..1 spans the zoomed map's outer cell edges
    ys = (torch.arange(h) + 0.5) * zoom / hz * 2 - 1
    xs = (torch.arange(w) + 0.5) * zoom / wz * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid_xy = torch.stack([gx, gy], -1)[None].float()
    return F.grid_sample(heat, grid_xy, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.inference_mode()
def detect(model, meta, gray: np.ndarray, transposes: bool, zoom: float | None) -> np.ndarray:
    x = detector_input(gray, meta.scale, meta.polarity)
    maps = list(flip_averaged(model, torch.from_numpy(pad_to_multiple(x))[None, None], transposes))
    if zoom:
        both = (torch.sigmoid(maps[0]) + heat_at(model, gray, meta, zoom, maps[0].shape[-2:], transposes)) / 2
        maps[0] = _logit(both)
    found = decode(*maps[:3], FLOOR, twin=maps[3] if len(maps) > 3 else None)[0]
    found[:, :4] *= OUTPUT_STRIDE / meta.scale
    h, w = gray.shape
    found[:, [0, 2]] = found[:, [0, 2]].clip(0, w)
    found[:, [1, 3]] = found[:, [1, 3]].clip(0, h)
    return found


VARIANTS = {
    "flips4": (False, None),
    "dihedral8": (True, None),
    "flips4+zoom1.2": (False, 1.2),
    "flips4+zoom0.85": (False, 0.85),
    "dihedral8+zoom1.2": (True, 1.2),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    det = Detector(str(ROOT / "models" / "chromodesk-detector.json"), device="cpu")
    split = json.loads((ROOT / "models" / "chromodesk-detector.split.json").read_text())
    images = _split_images([str(ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases")], split, "val",
                           args.limit)
    truths, grays = [], []
    for path, _ in images:
        img = load_gray(path)
        ann = read_voc(find_annotation(path), (img.width, img.height))
        truths.append(np.array([o.box.as_list() for o in ann.objects if not o.box.is_empty()], float).reshape(-1, 4))
        grays.append(img.gray)
    rows = []
    for name in args.variants:
        transposes, zoom = VARIANTS[name]
        t0 = time.perf_counter()
        preds = [detect(det.model, det.meta, g, transposes, zoom) for g in grays]
        ms = (time.perf_counter() - t0) / len(grays) * 1000
        shipped = at_threshold(preds, truths, det.meta.threshold)
        best = best_threshold(preds, truths)
        row = {"variant": name, "ap50": average_precision(preds, truths), "ms_per_image": ms,
               "at_shipped_threshold": shipped, "best_f1": best,
               "recall_at_precision_0.97": max((r["recall"] for r in (at_threshold(preds, truths, t)
                                                for t in np.arange(0.1, 0.9, 0.01)) if r["precision"] >= 0.97),
                                               default=0.0)}
        rows.append(row)
        print(f"{name:18s} AP50 {row['ap50']:.4f}  @{det.meta.threshold}: recall {shipped['recall']:.4f} "
              f"precision {shipped['precision']:.4f} mean|count err| {shipped['mean_count_error']:.2f}  "
              f"best F1 {best['f1']:.4f} @ {best['threshold']}  recall@P>=0.97 {row['recall_at_precision_0.97']:.4f}  "
              f"{ms:.0f} ms", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"split": "val", "images": len(grays), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
