"""How the assignment's probability floor (``AssignmentConfig.min_probability``) changes accuracy
and the numerical flags, on the validation cases only (the floor was chosen here).

    .venv/bin/python scripts/experiments/assignment_floor.py --split val --json docs/assignment-floor-val.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


from chromodesk.core.karyotype import AssignmentConfig
from chromodesk.inference.bundle import DEFAULT_MODEL
from chromodesk.inference.classifier import Classifier
from training.data import cell_groups, load_data
from training.evaluate import abnormality_truth, assigned_predictions, bundle_split, flag_rates, read_findings, select
from training.metrics import cell_accuracy

DATA = ["../shared/datasets/tseng2023-gband-metaphases", "../shared/datasets/gband-karyogram-chromosomes",
        "../shared/datasets/bioimlab-qband-chromosomes"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--split", default="val")
    p.add_argument("--floors", nargs="+", type=float, default=[0.0, 0.005, 0.01, 0.02])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    classifier = Classifier(DEFAULT_MODEL, device="auto")
    data, _ = load_data(DATA, classifier.preprocess, quiet=True)
    data = select(data, bundle_split(DEFAULT_MODEL), args.split)
    _, probs = classifier.predict_cells(data.images, data.features, cell_groups(data.source, data.cells))
    findings = read_findings(Path(DATA[0]))
    rows = []
    for floor in args.floors:
        cfg = replace(AssignmentConfig(), min_probability=floor)
        assigned, analyses = assigned_predictions(probs, data.cells, cfg)
        row = {"split": args.split, "min_probability": floor,
               "assigned_accuracy": float((assigned == data.labels).mean()),
               "assigned_cell_accuracy": cell_accuracy(assigned, data.labels, data.cells), "sources": {}}
        for src in sorted(set(data.source.tolist())):
            sel = data.source == src
            row["sources"][src] = float((assigned[sel] == data.labels[sel]).mean())
        sub = data.subset(data.source == Path(DATA[0]).name)
        truth, _ = abnormality_truth(findings, sub)
        row.update(flag_rates(analyses, truth))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
