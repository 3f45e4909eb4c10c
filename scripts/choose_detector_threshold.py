"""Choose the learned detector's score threshold on the VALIDATION cases, end to end: a lower
threshold finds more chromosomes and more false boxes, and the classifier's "not a chromosome"
head takes false boxes out again, so the threshold is worth choosing with the classifier that
will run after it. The test cases are never read here.

    .venv/bin/python scripts/choose_detector_threshold.py --classifier models/chromodesk-resnet18.json \
        --thresholds 0.375 0.3 0.25 0.2 [--write] [--json docs/detector-threshold-val.json]

The rule: the threshold that meets the most of the issue's detection targets on the validation
cases (recall50 >= 0.98 and precision50 >= 0.97 after the "not a chromosome" outcome, median
|count error| <= 1, end to end >= 95%), then the highest end-to-end accuracy, then the higher
threshold. (End-to-end accuracy alone keeps rising as the threshold falls and took the lowest
one tried, where the count was off by a median of 2: a cell would show 48 chromosomes.)
``--write`` stores the chosen threshold in the detector bundle's metadata, with the table that
chose it; ``--rows JSON`` chooses again from a saved sweep without running it.
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


RULE = "most issue targets met on validation, then highest end-to-end accuracy, then higher threshold"


def targets_met(row: dict) -> int:
    return sum([row["recall_after_reject"] >= 0.98, row["precision_after_reject"] >= 0.97,
                row["median_count_error_after_reject"] <= 1, row["end_to_end_accuracy"] >= 0.95])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", type=Path, default=ROOT / "models" / "chromodesk-detector.json")
    p.add_argument("--classifier", default=None, help="default: the shipped classifier")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"))
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.45, 0.4, 0.35, 0.3, 0.25])
    p.add_argument("--rows", default=None, help="a sweep saved by --json: choose again from it")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--write", action="store_true", help="store the chosen threshold in the detector bundle")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    rows = json.loads(Path(args.rows).read_text())["rows"] if args.rows else []
    for t in [] if args.rows else sorted(set(args.thresholds), reverse=True):
        r = evaluate_detection(str(args.detector), [args.data], split="val", classifier_model=args.classifier,
                               classical=False, limit=args.limit, quiet=True, threshold=t)
        rows.append({"threshold": t, **{k: r[k] for k in KEEP}, "n_images": r["n_images"], "classifier": r["classifier"]})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: (targets_met(r), r["end_to_end_accuracy"], r["threshold"]))
    result = {"split": "val", "chosen": best["threshold"], "rule": RULE, "rows": rows}
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
