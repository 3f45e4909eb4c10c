"""Issue 17's acceptance: the case karyotype of ``chromodesk report`` on every test-split case of
the Tseng metaphases (cells grouped by the ``case`` column of cells.csv), against the case
karyotype built the same way from the annotators' own labels, and against cells.csv's findings.

    .venv/bin/python scripts/case_report_eval.py [--json docs/case-report-test.json] [--cells runs/case-cells-test.pkl]

``--cells`` keeps each case's analysed cells (their labels and probabilities) in a file, and
a second run with the same file reads them from there: the case rules can then be measured
again without classifying every image anew.

The boxes are the annotators' (given), so this measures the labelling and the case logic
(``--detect``: the shipped detector finds them, as from a lab's raw images);
the same rules (ISCN clones: a gain in 2 cells, a loss in 3) make both karyotypes.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
from collections import defaultdict
from pathlib import Path

from chromodesk.core.case import CaseSummary, CellEntry
from chromodesk.core.imaging import load_gray
from chromodesk.core.karyotype import iscn_string
from chromodesk.core.labels import CLASSES
from chromodesk.core.voc import read_voc
from chromodesk.inference.bundle import DEFAULT_MODEL
from chromodesk.inference.classifier import Classifier
from chromodesk.report import build_case

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases"


def truth_entry(image: Path) -> CellEntry:
    img = load_gray(image)
    ann = read_voc(DATA / "annotations" / f"{image.stem}.xml", (img.width, img.height))
    counts = {c: 0 for c in CLASSES}
    for o in ann.objects:
        if o.label in counts:
            counts[o.label] += 1
    return CellEntry(image.name, sum(counts.values()), iscn_string(counts), True, 0)


def recorded_as(cells: list[dict]) -> str:
    """The case by cells.csv's own findings: "normal" (every cell), "numerical" (a cell recorded
    with an aneuploidy, none structural) or "structural or unknown" (outside a numerical report)."""
    kinds = {r["finding"] for r in cells}
    if kinds <= {"normal"}:
        return "normal"
    return "structural or unknown" if kinds & {"structural", "unknown"} else "numerical"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--json", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--cells", default=None, help="a file to keep the analysed cells in (read when it exists)")
    p.add_argument("--detect", action="store_true", help="from the raw images: the detector finds the chromosomes")
    args = p.parse_args()
    split = json.loads(DEFAULT_MODEL.with_suffix(".split.json").read_text())
    rows = list(csv.DictReader(open(DATA / "cells.csv")))
    by_case = defaultdict(list)
    for r in rows:
        if split.get(f"{DATA.name}/{r['case']}") == args.split and (DATA / "images" / f"{r['image']}.jpg").is_file():
            by_case[r["case"]].append(r)
    kept = pickle.loads(Path(args.cells).read_bytes()) if args.cells and Path(args.cells).is_file() else None
    classifier = Classifier(device="auto") if kept is None else None
    model_id = kept["model_id"] if kept else classifier.model_id
    entries = {}
    out = []
    for case, cells in sorted(by_case.items()):
        images = [DATA / "images" / f"{r['image']}.jpg" for r in cells]
        if kept:
            entries[case] = kept["entries"][case]
        else:
            entries[case] = build_case(images, case, classifier, use_sessions=False, detect=args.detect).summary.cells
        predicted = CaseSummary(case, entries[case]).iscn()
        truth = CaseSummary(case, [truth_entry(i) for i in images]).iscn()
        findings = sorted({f"{r['finding']}:{r['finding_detail']}" for r in cells if r["finding"] != "normal"})
        out.append({"case": case, "cells": len(cells), "predicted": predicted, "from_annotations": truth,
                    "agrees": predicted == truth, "recorded_findings": findings, "recorded_as": recorded_as(cells)})
        print(json.dumps(out[-1]), flush=True)
    by_records = {kind: {"cases": len(rows), "say_46": sum(o["predicted"] in ("46,XX", "46,XY") for o in rows),
                         "agree_with_annotations": sum(o["agrees"] for o in rows)}
                  for kind in ("normal", "numerical", "structural or unknown")
                  for rows in [[o for o in out if o["recorded_as"] == kind]]}
    normal = [o for o in out if o["from_annotations"] in ("46,XX", "46,XY")]
    abnormal = [o for o in out if o not in normal]
    result = {"split": args.split, "boxes": "detected" if args.detect else "annotations", "cases": len(out), "agreement": sum(o["agrees"] for o in out) / max(len(out), 1),
              "normal_cases": len(normal), "normal_agreement": sum(o["agrees"] for o in normal) / max(len(normal), 1),
              "abnormal_cases": len(abnormal), "abnormal_agreement": sum(o["agrees"] for o in abnormal) / max(len(abnormal), 1),
              "by_records": by_records, "model_id": model_id, "rows": out}
    if args.cells and kept is None:
        Path(args.cells).parent.mkdir(parents=True, exist_ok=True)
        Path(args.cells).write_bytes(pickle.dumps({"model_id": model_id, "entries": entries}))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
