"""Ship an orientation run as the bundled p-arm orientation network: its bundle (made from the
run's best.pt and test report when the run predates bundles) copied into models/, loaded back
through the verified loader, the test figures in its metadata (and the end-to-end karyogram
figures of ``scripts/measure_orientation.py``, when that report is there).

    .venv/bin/python scripts/ship_orientation.py runs/orientation [--report docs/orientation-test.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from chromodesk.core.atomic import atomic_write_text
from chromodesk.inference.orientation import load_orientation
from chromodesk.inference.orientation_net import OrientationNet
from training.orientation import make_bundle

ROOT = Path(__file__).resolve().parents[1]


def run_bundle(run: Path, report: Path) -> Path:
    """The run's orientation.json, made from best.pt + the test report if the run has none."""
    bundle = run / "orientation.json"
    if bundle.is_file():
        return bundle
    checkpoint = run / "best.pt"
    model = OrientationNet()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))  # our own run: the one pickle we trust
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(checkpoint.stat().st_mtime))
    return make_bundle(model, json.loads(report.read_text()), run / "orientation", f"orientation-w{model.features[0].out_channels}-{stamp}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "orientation-test.json",
                        help="the run's --json test report (only read when the run has no bundle yet)")
    parser.add_argument("--karyogram-report", type=Path, default=ROOT / "docs" / "orientation-karyogram.json")
    parser.add_argument("--name", default="chromodesk-orientation")
    args = parser.parse_args()
    bundle = run_bundle(args.run, args.report)
    dest = ROOT / "models" / args.name
    meta = json.loads(bundle.read_text())
    shutil.copy(bundle.parent / meta["weights_file"], dest.with_suffix(".safetensors"))
    meta["weights_file"] = dest.with_suffix(".safetensors").name
    if args.karyogram_report.is_file():
        k = json.loads(args.karyogram_report.read_text())
        meta["metrics"]["karyogram"] = {"p_arm_up": k["p_arm_up"], "chromosomes": k["chromosomes"], "cells": k["cells"],
                                        "evaluated_with": "scripts/measure_orientation.py (test cases)"}
    atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))
    _, shipped = load_orientation(dest.with_suffix(".json"))  # checksum and shapes, as the app will load it
    print(f"shipped {shipped.model_id}: test accuracy {shipped.metrics['test']['accuracy']} -> {dest.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
