"""Ship a detector run as the bundled detector: copy its bundle and split into models/, evaluate it
on the test cases (learned and classical detector, end to end with the shipped classifier) and
record the figures in the bundle's metadata and in docs/evaluate-detect-test.json.

    .venv/bin/python scripts/ship_detector.py runs/detect1 [--shared ../shared/datasets]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from chromodesk.core.atomic import atomic_write_text
from training.detect_eval import evaluate_detection, print_detection_summary

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--name", default="chromodesk-detector")
    parser.add_argument("--no-evaluate", action="store_true")
    args = parser.parse_args()
    dest = ROOT / "models" / args.name
    meta = json.loads((args.run / "detector.json").read_text())
    shutil.copy(args.run / meta["weights_file"], dest.with_suffix(".safetensors"))
    meta["weights_file"] = dest.with_suffix(".safetensors").name
    atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))
    shutil.copy(args.run / "split.json", dest.with_suffix(".split.json"))
    if args.no_evaluate:
        return 0
    result = evaluate_detection(str(dest.with_suffix(".json")), [str(args.shared / "tseng2023-gband-metaphases")],
                                split="test", quiet=True)
    keep = ("ap50", "ap50_95", "recall50", "precision50", "median_count_error", "mean_count_error",
            "end_to_end_accuracy", "seconds_per_image", "n_images")
    meta["metrics"] = dict(meta.get("metrics", {}), test={k: result[k] for k in keep if k in result},
                           evaluated_with="chromodesk-train evaluate-detect --split test (case-disjoint)")
    atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))
    atomic_write_text(ROOT / "docs" / "evaluate-detect-test.json", json.dumps(result, indent=1))
    print_detection_summary(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
