"""Ship a training run (or a bundle with its split beside it, e.g. from ``chromodesk-train
context``) as the bundled model: copy the bundle and its split into models/, evaluate it
on the test split of every data set (crop network alone, whole classifier, with cell
assignment), and record those figures in the bundle's metadata.

    .venv/bin/python scripts/ship_model.py runs/main [--shared ../shared/datasets]
    .venv/bin/python scripts/ship_model.py runs/ctx/model.json --fit-metrics runs/main2/metrics.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from chromodesk.core.atomic import atomic_write_text
from training.evaluate import evaluate
from training.report import plot_confusion

ROOT = Path(__file__).resolve().parents[1]
SETS = ("tseng2023-gband-metaphases", "gband-karyogram-chromosomes", "bioimlab-qband-chromosomes")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--name", default="chromodesk-resnet18")
    parser.add_argument("--fit-metrics", type=Path, default=None,
                        help="metrics.json of the crop network's fit run (for a context bundle made from it)")
    args = parser.parse_args()
    dest = ROOT / "models" / args.name
    dest.parent.mkdir(exist_ok=True)
    bundle = args.run / "model.json" if args.run.is_dir() else args.run
    split = args.run / "split.json" if args.run.is_dir() else bundle.with_suffix("").with_suffix(".split.json")
    meta = json.loads(bundle.read_text())
    shutil.copy(bundle.parent / meta["weights_file"], dest.with_suffix(".safetensors"))
    meta["weights_file"] = dest.with_suffix(".safetensors").name
    atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))
    shutil.copy(split, dest.with_suffix(".split.json"))
    if meta.get("companion"):  # the companion crop network goes along, named after the model
        src = bundle.parent / meta["companion"]["bundle"]
        other = dest.with_name(dest.name + "-companion")
        other_meta = json.loads(src.read_text())
        shutil.copy(src.parent / other_meta["weights_file"], other.with_suffix(".safetensors"))
        other_meta["weights_file"] = other.with_suffix(".safetensors").name
        other_meta["training"]["companion_of"] = dest.with_suffix(".json").name
        atomic_write_text(other.with_suffix(".json"), json.dumps(other_meta, indent=2))
        meta["companion"]["bundle"] = other.with_suffix(".json").name
        atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))

    result = evaluate(str(dest.with_suffix(".json")), [str(args.shared / s) for s in SETS], split="test", quiet=True)
    keep = ("accuracy", "cell_accuracy", "crop_accuracy", "crop_cell_accuracy", "assigned_accuracy", "assigned_cell_accuracy", "abnormal_sensitivity",
            "abnormal_specificity", "n_chromosomes", "n_cells")
    meta["metrics"] = {"test_split": {k: result[k] for k in keep if k in result}, "per_source": result["sources"],
                       "evaluated_with": "chromodesk-train evaluate --split test (case-disjoint)"}
    fit_path = args.fit_metrics or bundle.parent / "metrics.json"
    if fit_path.is_file():
        fit_metrics = json.loads(fit_path.read_text())
        meta["training"]["train_images_per_s"] = fit_metrics.get("train_images_per_s")
        meta["training"]["infer_images_per_s"] = fit_metrics.get("infer_images_per_s")
    atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    atomic_write_text(out / "evaluate-test.json", json.dumps(result, indent=1))
    plot_confusion(result["confusion"], out / "confusion.png", "Shipped model, test split of all three sets (classifier, no cell assignment)")
    print(json.dumps(meta["metrics"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
