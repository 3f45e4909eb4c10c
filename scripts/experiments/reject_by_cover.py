"""Experiment (reporting, no choice made): the shipped "not a chromosome" network's rejections of
the boxes with nothing inside, split by how much of an annotated chromosome's box each holds
(exactly none, or up to 5 / 10 / 15%: the set's definition allows 15%, so a box may hold an arm cut
by its edge). Rows as ``chromodesk-train reject`` caches them (validation seed 1, test seed 2).

    CHROMODESK_CACHE=runs/cache .venv/bin/python scripts/experiments/reject_by_cover.py [--test] \
        --workers 2 --json docs/reject-by-cover.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from reject_compare import shipped_rows  # beside this script

from chromodesk.core.atomic import atomic_write_text
from training.reject import EMPTY_KINDS, reject_report, reject_scores
BANDS = (("none", 0.0, 0.0), ("up to 5%", 0.0, 0.05), ("5-10%", 0.05, 0.10), ("10-15%", 0.10, 0.15))


def by_cover(rows: dict, rejected: np.ndarray) -> dict:
    out = {}
    for kind in EMPTY_KINDS:
        k = rows["kind"] == kind
        for name, lo, hi in BANDS:
            cov = rows["covered"]
            sel = k & ((cov == 0) if hi == 0 else ((cov > lo) & (cov <= hi)))
            if sel.any():
                out.setdefault(kind, {})[name] = {"n": int(sel.sum()), "rejected": round(float(rejected[sel].mean()), 4)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    classifier, parts = shipped_rows(["val", "test"] if args.test else ["val"], args.workers)
    model = classifier.model
    result = {"model": classifier.model_id, "threshold": model.reject_cfg.threshold}
    for part, rows in parts.items():
        scores = reject_scores(model.reject, rows, model.reject_cfg.box_features)
        result[f"{part}_report"] = reject_report(scores, rows, model.reject_cfg.threshold)  # the tool's own report
        rejected = scores >= model.reject_cfg.threshold
        result[part] = by_cover(rows, rejected)
        real = (rows["kind"] == "chromosome") & (rows["label"] >= 0)
        result[part]["real_chromosomes"] = {"n": int(real.sum()), "rejected": round(float(rejected[real].mean()), 4)}
        print(part, json.dumps(result[part]), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
