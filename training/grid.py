"""``chromodesk-train grid``: the source report's search over optimizers x learning rates
(x architectures). One run folder per configuration with its learning-curve PNG, plus a
table (``grid.csv``, ``grid.md``) of validation and test accuracy."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from chromodesk.core.atomic import atomic_write_text
from chromodesk.core.preprocess import PreprocessConfig

from .data import CropSet, make_split
from .fit import TrainConfig, fit


def run_grid(data: CropSet, base: TrainConfig, pre: PreprocessConfig, out: Path, optimizers, lrs, archs,
             quiet: bool = False) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    split = make_split(data, base.seed)  # one split for every configuration: comparable figures
    rows = []
    for arch in archs:
        for opt in optimizers:
            for lr in lrs:
                name = f"{arch}-{opt}-lr{lr:g}"
                cfg = dataclasses.replace(base, arch=arch, optimizer=opt, lr=lr)
                metrics = fit(data, cfg, pre, out / name, split=split, quiet=quiet)
                best = max(metrics["history"], key=lambda h: h["val_acc"]) if metrics["history"] else {}
                rows.append({
                    "config": name, "arch": arch, "optimizer": opt, "lr": lr,
                    "epochs": len(metrics["history"]), "best_epoch": best.get("epoch"),
                    "val_acc": round(best.get("val_acc", float("nan")), 4),
                    "test_acc": round(metrics["test"].get("accuracy", float("nan")), 4) if metrics["test"] else None,
                    "test_cell_acc": round(metrics["test"].get("cell_accuracy", float("nan")), 4) if metrics["test"] else None,
                    "train_images_per_s": round(metrics["train_images_per_s"] or 0, 1),
                    "curves": str((out / name / "curves.png").relative_to(out)),
                })
    with open(out / "grid.csv.tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    (out / "grid.csv.tmp").replace(out / "grid.csv")
    header = "| " + " | ".join(rows[0].keys()) + " |\n|" + "---|" * len(rows[0]) + "\n"
    atomic_write_text(out / "grid.md", header + "".join("| " + " | ".join(str(v) for v in r.values()) + " |\n" for r in rows))
    atomic_write_text(out / "grid.json", json.dumps(rows, indent=1))
    return rows
