"""Experiment (validation cases only): the cell's say in detection the other way round. A box the
detector scored just above its threshold that makes its cell one too many of a label (a piece of
a chromosome read as a 21, a duplicate) leaves the cell when the assignment gains more without it
than the detector's evidence for it, ``WEIGHT x (logit(score) - logit(threshold))`` nats (the
shipped doubt weight, and others). Boxes are tried from the least sure; only in cells of 30+
boxes. Reports the same figures as ``scripts/choose_detector_doubt.py`` at its shipped floor.

    .venv/bin/python scripts/experiments/cell_drops_detections.py [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from chromodesk.core.karyotype import MIN_CELL_FOR_ASSIGNMENT, assign, logit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from choose_detector_doubt import collect, score_rule  # noqa: E402


def dropper(t: float, weight: float, ceiling: float):
    def after(final: np.ndarray, rejected: np.ndarray, scores: np.ndarray) -> np.ndarray:
        rejected = rejected.copy()
        keep = [int(i) for i in np.flatnonzero(~rejected)]
        if len(keep) < MIN_CELL_FOR_ASSIGNMENT:
            return rejected
        cost = assign(final[keep])[2]
        for i in sorted((i for i in keep if scores[i] < ceiling), key=lambda i: scores[i]):
            rest = [j for j in keep if j != i]
            trial = assign(final[rest])[2]
            if trial < cost - weight * (logit(scores[i]) - logit(t)):
                keep, cost, rejected[i] = rest, trial, True
        return rejected
    return after


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    det, clf, images = collect(ROOT / "models" / "chromodesk-detector.json", args.limit, det_floor())
    m = det.meta
    rows = [dict(score_rule(clf, images, m.threshold, m.doubt_floor, m.doubt_weight), rule="shipped")]
    print(json.dumps(rows[-1]), flush=True)
    for weight in (2.0, 1.0, 4.0):
        for ceiling in (0.6, 1.0):
            row = score_rule(clf, images, m.threshold, m.doubt_floor, m.doubt_weight,
                             after=dropper(m.threshold, weight, ceiling))
            rows.append(dict(row, rule=f"drop: weight {weight}, scores under {ceiling}"))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"split": "val", "images": len(images), "rows": rows}, indent=1))
    return 0


def det_floor() -> float:
    meta = json.loads((ROOT / "models" / "chromodesk-detector.json").read_text())
    return float(meta["doubt_floor"] or meta["threshold"])


if __name__ == "__main__":
    raise SystemExit(main())
