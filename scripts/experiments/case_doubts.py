"""How close another reading must come before the report doubts a cell (``DOUBT_NATS``): of the
cases whose karyotype disagrees with the annotators', how many carry a doubt, and how many of the
agreeing ones do (a false alarm), from the cells ``scripts/case_report_eval.py --cells`` kept.

    .venv/bin/python scripts/experiments/case_doubts.py runs/case-cells-val.pkl --split val \\
        --json docs/case-doubts-val.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import chromodesk.core.case as case_module
from chromodesk.core.case import CaseSummary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from case_report_eval import DATA, truth_entry  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("cells")
    p.add_argument("--split", default="val")
    p.add_argument("--nats", default="1,2,3,4,6,8")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    kept = pickle.loads(Path(args.cells).read_bytes())["entries"]
    truth = {case: CaseSummary(case, [truth_entry(DATA / "images" / e.image) for e in entries]).iscn()
             for case, entries in kept.items()}
    out = []
    for nats in [float(x) for x in args.nats.split(",")]:
        case_module.DOUBT_NATS = nats
        row = {"nats": nats, "cases": len(kept), "agree": 0, "disagree": 0, "disagree_doubted": 0,
               "agree_doubted": 0, "doubted_cases": []}
        for case, entries in sorted(kept.items()):
            summary = CaseSummary(case, entries)
            right = summary.iscn() == truth[case]
            doubts = summary.doubts()
            row["agree" if right else "disagree"] += 1
            if doubts:
                row["agree_doubted" if right else "disagree_doubted"] += 1
                row["doubted_cases"].append({"case": case, "predicted": summary.iscn(), "from_annotations": truth[case],
                                             "doubts": doubts})
        out.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "doubted_cases"}))
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "rows": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
