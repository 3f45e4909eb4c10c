"""Experiment (choice on validation cases): does averaging the logits of several "not a chromosome"
networks, trained alike from other random seeds on the same cached rows, reject more empty boxes
at the same share of real chromosomes rejected (the threshold chosen on validation as the tool does)?

    .venv/bin/python scripts/experiments/reject_ensemble.py --members 2 --json runs/reject-ensemble.json

Member 0 is the shipped bundle's network; members 1.. are trained here (about 21 min each on one
core for 60 epochs) and saved under runs/reject-ensemble/ so that a rerun reuses them.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from chromodesk.inference.bundle import DEFAULT_MODEL
from chromodesk.inference.classifier import Classifier
from training.evaluate import classifier_with_split
from training.reject import (RejectTrainConfig, choose_threshold, collect, fit_head, reject_report, reject_scores,
                             split_paths)

ROOT = Path(__file__).resolve().parents[2]
# relative, as the rows were cached with (the cache key holds the image paths): run from the project root
DATA = Path("../shared/datasets/tseng2023-gband-metaphases")
ROWS_MODEL = Path("runs/maskfit/ctx/model.json")  # the classifier the cached rows were made with
DETECTOR = Path("runs/old-detector/chromodesk-detector.json")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--json", default=None)
    ap.add_argument("--test", action="store_true", help="also report the test cases (after the choice is made)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from chromodesk.inference.detector import Detector

    rows_classifier, _, split = classifier_with_split(str(ROWS_MODEL), "rows")
    det = Detector(str(DETECTOR), device="cpu")
    cfg = RejectTrainConfig(epochs=args.epochs)
    cache = Path.home() / ".cache" / "chromodesk"
    train_paths = split_paths(str(DATA), split, "train")
    rng = np.random.default_rng(cfg.seed)
    train_paths = sorted(rng.choice(train_paths, cfg.max_train_images, replace=False).tolist())
    parts = {"val": collect(split_paths(str(DATA), split, "val"), rows_classifier, cfg, det, 1, True, True, cache)}
    if args.test:
        parts["test"] = collect(split_paths(str(DATA), split, "test"), rows_classifier, cfg, det, 2, False, True, cache)
    shipped = Classifier(str(DEFAULT_MODEL), device="cpu").model.reject
    nets = [shipped]
    out_dir = ROOT / "runs" / "reject-ensemble"
    out_dir.mkdir(parents=True, exist_ok=True)
    train = None
    for k in range(1, args.members):
        path = out_dir / f"member{k}-e{args.epochs}.safetensors"
        if path.is_file():
            net = copy.deepcopy(shipped)
            net.load_state_dict(load_file(str(path)))
        else:
            if train is None:
                train = collect(train_paths, rows_classifier, cfg, det, 0, True, True, cache)
            net = fit_head(train, RejectTrainConfig(epochs=args.epochs, seed=k), rows_classifier.model.embedding_width, False)
            save_file(net.state_dict(), str(path))
        nets.append(net)
    result = {"members": args.members, "epochs": args.epochs}
    for name, rows in parts.items():
        logits = np.stack([logit(reject_scores(n, rows, True)) for n in nets])
        for m in range(1, len(nets) + 1):
            score = 1 / (1 + np.exp(-logits[:m].mean(0)))
            if name == "val":
                result.setdefault("thresholds", {})[m] = choose_threshold(score, rows, cfg.max_positive_reject)
            rep = reject_report(score, rows, result["thresholds"][m])
            result.setdefault(name, {})[m] = rep
            print(name, m, "members: background", round(rep["negatives"]["background"]["rejected"], 4),
                  "nothing inside", round(rep["nothing_inside_rejected"], 4), "chromosomes rejected",
                  round(rep["chromosomes_rejected"], 4), "threshold", round(result["thresholds"][m], 4), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
