"""How many crops of a crop folder would be read with the wrong stain polarity if each picture
were judged alone instead of with its whole cell (the rule ``preprocess_crops`` follows).

    .venv/bin/python scripts/polarity_audit.py ../shared/datasets/gband-karyogram-chromosomes [...]

Prints one JSON line per folder: crops, cells, and the crops whose own pixels give the other
polarity than their cell's pixels together (those came out as a bright frame around a dark
hole before crop folders were decided per cell).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from chromodesk.core.imaging import load_gray
from chromodesk.core.preprocess import PreprocessConfig, clahe, denoise, needs_inversion
from training.data import labelled_rows_by_cell, read_labels_csv


def audit(root: Path, cfg: PreprocessConfig) -> dict:
    by_cell = labelled_rows_by_cell(read_labels_csv(root))  # the cells training preprocesses together
    crops = disagree = 0
    for rows in by_cell.values():
        contrasted = [clahe(denoise(load_gray(root / r["path"]).gray, cfg), cfg) for r in rows]
        cell = needs_inversion(np.concatenate([c.ravel() for c in contrasted]), cfg.polarity)
        disagree += int(sum(needs_inversion(c, cfg.polarity) != cell for c in contrasted))
        crops += len(rows)
    return {"source": root.name, "crops": crops, "cells": len(by_cell), "alone_differs_from_cell": disagree,
            "share": round(disagree / max(crops, 1), 4)}


def main(argv: list[str]) -> int:
    for folder in argv or ["../shared/datasets/gband-karyogram-chromosomes"]:
        print(json.dumps(audit(Path(folder), PreprocessConfig())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
