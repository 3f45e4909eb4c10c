"""``analyze --workers 2`` against ``--workers 1`` on the same 20 images (issue 16's bench row).

    .venv/bin/python scripts/bench_workers.py [--images 20] [--json docs/bench-workers.json]

The images are the first test-split cells (by the shipped model's case split) of the Tseng
metaphases, with their VOC boxes; each run starts a fresh process, so model loading is in it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    split = json.loads((ROOT / "models" / "chromodesk-resnet18.split.json").read_text())
    sys.path.insert(0, str(ROOT))
    from training.data import case_of_image

    images = [q for q in sorted((DATA / "images").glob("*.jpg"))
              if split.get(f"{DATA.name}/{case_of_image(q.stem)}") == "test"][: args.images]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cells"
        folder.mkdir()
        for q in images:
            shutil.copy(q, folder / q.name)
            shutil.copy(DATA / "annotations" / f"{q.stem}.xml", folder / f"{q.stem}.xml")
        for workers in (1, 2, 1, 2):  # interleaved: a drift of the machine's load hits both alike
            t0 = time.perf_counter()
            run = subprocess.run([str(ROOT / ".venv" / "bin" / "chromodesk"), "analyze", str(folder), "--workers",
                                  str(workers), "--device", "cpu", "--json"], capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            analysed = sum(1 for line in run.stdout.splitlines() if line.startswith("{"))
            rows.append({"workers": workers, "seconds": round(seconds, 2), "images": analysed, "exit": run.returncode})
            print(json.dumps(rows[-1]), flush=True)
    best = {w: min(r["seconds"] for r in rows if r["workers"] == w) for w in (1, 2)}
    result = {"images": len(images), "runs": rows, "best_seconds": best, "speedup": round(best[1] / best[2], 2),
              "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
              "note": "wall time of the whole command, model loading included; best of two runs each"}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
