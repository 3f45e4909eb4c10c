"""Choose the learned detector's score threshold on the VALIDATION cases, end to end: a lower
threshold finds more chromosomes and more false boxes, and the classifier's "not a chromosome"
head takes false boxes out again, so the threshold is worth choosing with the classifier that
will run after it. The test cases are never read here.

    .venv/bin/python scripts/choose_detector_threshold.py --classifier models/chromodesk-resnet18.json \
        --thresholds 0.375 0.3 0.25 0.2 [--write] [--json docs/detector-threshold-val.json]

``--write`` stores the best threshold (highest end-to-end accuracy; ties go to the higher
threshold) in the detector bundle's metadata, with the table that chose it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chromodesk.core.atomic import atomic_write_text
from training.detect_eval import evaluate_detection

ROOT = Path(__file__).resolve().parents[1]
KEEP = ("end_to_end_accuracy", "recall50", "precision50", "recall_after_reject", "precision_after_reject",
        "median_count_error_after_reject", "mean_count_error_after_reject")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", type=Path, default=ROOT / "models" / "chromodesk-detector.json")
    p.add_argument("--classifier", default=None, help="default: the shipped classifier")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"))
    p.add_argument("--thresholds", type=float, nargs="+", required=True)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--write", action="store_true", help="store the chosen threshold in the detector bundle")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    rows = []
    for t in sorted(set(args.thresholds), reverse=True):
        r = evaluate_detection(str(args.detector), [args.data], split="val", classifier_model=args.classifier,
                               classical=False, limit=args.limit, quiet=True, threshold=t)
        rows.append({"threshold": t, **{k: r[k] for k in KEEP}, "n_images": r["n_images"], "classifier": r["classifier"]})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["end_to_end_accuracy"])  # first (highest threshold) wins a tie
    result = {"split": "val", "chosen": best["threshold"], "rows": rows}
    print(f"chosen on the validation cases: score >= {best['threshold']} "
          f"(end to end {best['end_to_end_accuracy']:.4f})")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    if args.write:
        meta = json.loads(args.detector.read_text())
        meta["threshold"] = best["threshold"]
        meta.setdefault("training", {})["threshold_choice"] = result
        atomic_write_text(args.detector, json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
