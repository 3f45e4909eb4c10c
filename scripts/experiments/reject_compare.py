"""Experiment: the shipped "not a chromosome" network against a candidate bundle's, each at its
own threshold (chosen on validation by the tool), on the same boxes: the rows
``chromodesk-train reject`` cached for the shipped classifier and detector (validation seed 1,
test seed 2). Validation first; ``--test`` only once the choice is made.

    CHROMODESK_CACHE=runs/cache .venv/bin/python scripts/experiments/reject_compare.py \
        --candidate runs/reject-all/classifier.json [--test] --json docs/reject-compare-val.json
"""

from __future__ import annotations

import argparse
import json

from chromodesk.core.atomic import atomic_write_text
from chromodesk.inference.bundle import DEFAULT_MODEL
from chromodesk.inference.classifier import Classifier
from chromodesk.inference.detector import DEFAULT_DETECTOR, Detector
from training.evaluate import classifier_with_split
from training.reject import RejectTrainConfig, part_rows, reject_report, reject_scores, split_paths

# relative, as the tool was run (the cache key holds the image paths): run from the project root
DATA = "../shared/datasets/tseng2023-gband-metaphases"
SHOWN = ("background", "classical", "detector", "fragment", "merged")


def shipped_rows(parts: list[str], workers: int = 1):
    """The shipped classifier and the reject rows the tool caches for it and the shipped detector."""
    classifier, _, split = classifier_with_split(None, "rows")
    det = Detector(str(DEFAULT_DETECTOR), device="cpu")
    return classifier, {part: part_rows(part, split_paths(DATA, split, part), classifier, RejectTrainConfig(), det, False, workers)
                        for part in parts}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidate", default=None, help="without it: the shipped network alone")
    ap.add_argument("--test", action="store_true", help="also the test cases (after the choice is made)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    _, parts = shipped_rows(["val", "test"] if args.test else ["val"], args.workers)
    nets = {"shipped": Classifier(str(DEFAULT_MODEL), device="cpu").model}
    if args.candidate:
        nets["candidate"] = Classifier(args.candidate, device="cpu").model
    result = {"candidate": args.candidate}
    for part, rows in parts.items():
        for name, model in nets.items():
            rep = reject_report(reject_scores(model.reject, rows, model.reject_cfg.box_features), rows, model.reject_cfg.threshold)
            result.setdefault(part, {})[name] = rep
            kinds = ", ".join(f"{k} {rep['negatives'][k]['rejected']:.4f}" for k in SHOWN if k in rep["negatives"])
            print(f"{part} {name:9s} threshold {rep['threshold']:.4f}: nothing inside {rep['nothing_inside_rejected']:.4f} "
                  f"(n={rep['nothing_inside_n']}), chromosomes rejected {rep['chromosomes_rejected']:.4f} "
                  f"(n={rep['chromosomes_n']}); {kinds}", flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
