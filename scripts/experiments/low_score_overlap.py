"""Experiment (validation cases only): do the detector's low-score boxes that lie mostly inside a
higher-scored box cause the false boxes that keep the threshold at 0.40? For each rule, keep every
detection scored >= HIGH, and one scored in [LOW, HIGH) only when at most COVER of its area lies
inside any higher-scored kept box; report recall50 / precision50 / count errors (detection only).

    .venv/bin/python scripts/experiments/low_score_overlap.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from chromodesk.core.imaging import load_gray
from chromodesk.core.voc import find_annotation, read_voc
from chromodesk.inference.detector import Detector
from training.detect_eval import _split_images
from training.detect_metrics import at_threshold

ROOT = Path(__file__).resolve().parents[2]


def inside_share(box: np.ndarray, others: np.ndarray) -> float:
    if len(others) == 0:
        return 0.0
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)
    return float((ix * iy).max() / area)


def filtered(pred: np.ndarray, low: float, high: float, cover: float) -> np.ndarray:
    pred = pred[np.argsort(-pred[:, 4])]
    kept = [p for p in pred if p[4] >= high]
    for p in pred:
        if low <= p[4] < high and inside_share(p, np.array(kept).reshape(-1, 5)) <= cover:
            kept.append(p)
    return np.array(kept).reshape(-1, 5)


def validation_images(det: Detector, limit: int, threshold: float = 0.2):
    """(image, truth boxes, detections scored >= threshold) for each validation image of the detector's split."""
    split = json.loads((ROOT / "models" / "chromodesk-detector.split.json").read_text())
    images = _split_images([str(ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases")], split, "val", limit)
    for path, _ in images:
        img = load_gray(path)
        ann = read_voc(find_annotation(path), (img.width, img.height))
        truth = np.array([o.box.as_list() for o in ann.objects if not o.box.is_empty()], float).reshape(-1, 4)
        yield img, truth, det.detect_array(img.gray, threshold=threshold)


def score_rule(preds: list[np.ndarray], truths: list[np.ndarray], rule: str, rows: list[dict], **params) -> None:
    """Detection figures of one rule's kept boxes, printed and added to ``rows``."""
    r = at_threshold(preds, truths, 0.0)
    r.update(params)
    rows.append(r)
    print(f"{rule}: recall {r['recall']:.4f} precision {r['precision']:.4f} "
          f"|count error| median {r['median_count_error']:.0f} mean {r['mean_count_error']:.2f}", flush=True)


def save_rows(path: str | None, images: int, rows: list[dict]) -> None:
    if path:
        Path(path).write_text(json.dumps({"split": "val", "images": images, "rows": rows}, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    det = Detector(str(ROOT / "models" / "chromodesk-detector.json"))
    preds, truths = [], []
    for _, truth, pred in validation_images(det, args.limit):
        truths.append(truth)
        preds.append(pred)
    rows = []
    for low, high, cover in [(0.40, 0.40, 1.0), (0.30, 0.30, 1.0), (0.25, 0.25, 1.0),
                             (0.30, 0.40, 0.5), (0.30, 0.40, 0.3), (0.25, 0.40, 0.5), (0.25, 0.40, 0.3),
                             (0.20, 0.40, 0.3), (0.25, 0.35, 0.3)]:
        score_rule([filtered(p, low, high, cover) for p in preds], truths,
                   f"low {low:.2f} high {high:.2f} cover<={cover:.1f}", rows, low=low, high=high, cover=cover)
    save_rows(args.json, len(preds), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
