"""Ship a mask-network run as the bundled segmenter: its bundle copied into models/, the test
figures of ``chromodesk-train evaluate-masks`` (and of ``scripts/separation_eval.py``, when
given) in its metadata, loaded back through the verified loader.

    .venv/bin/python scripts/ship_masks.py runs/masks1 --report docs/masks-test.json \
        [--separation docs/separation-test.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from chromodesk.core.atomic import atomic_write_text
from chromodesk.inference.segmenter import load_segmenter

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--report", type=Path, default=None, help="evaluate-masks --json output (test split)")
    parser.add_argument("--separation", type=Path, default=None, help="scripts/separation_eval.py --json output")
    parser.add_argument("--name", default="chromodesk-masks")
    args = parser.parse_args()
    bundle = args.run / "segmenter.json"
    dest = ROOT / "models" / args.name
    meta = json.loads(bundle.read_text())
    shutil.copy(bundle.parent / meta["weights_file"], dest.with_suffix(".safetensors"))
    meta["weights_file"] = dest.with_suffix(".safetensors").name
    if args.report:
        report = json.loads(args.report.read_text())
        meta["metrics"]["test"] = {k: report[k] for k in ("polygon_set", "gband_synthetic") if k in report}
        meta["metrics"]["test"]["evaluated_with"] = "chromodesk-train evaluate-masks --split test (cell/case-disjoint)"
    if args.separation:
        sep = json.loads(args.separation.read_text())
        meta["metrics"]["classification"] = {k: sep[k] for k in ("with_reject_head", "without_reject_head", "images", "note")
                                             if k in sep}
    atomic_write_text(dest.with_suffix(".json"), json.dumps(meta, indent=2))
    shutil.copy(args.run / "split.json", dest.with_suffix(".split.json")) if (args.run / "split.json").is_file() else None
    _, shipped = load_segmenter(dest.with_suffix(".json"))  # checksum and shapes, as the app will load it
    print(f"shipped {shipped.model_id} (threshold {shipped.threshold}) -> {dest.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
