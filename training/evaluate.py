"""``chromodesk-train evaluate``: accuracy of a bundle per chromosome and per cell, with and
without cell-level assignment, and numerical-abnormality flag sensitivity/specificity
on the metaphase set's recorded findings (``cells.csv``)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from chromodesk.core.errors import InputError
from chromodesk.core.karyotype import (MIN_CELL_FOR_ASSIGNMENT, AssignmentConfig, analyse_cell, cell_flags,
                                       is_numerically_abnormal)
from chromodesk.core.labels import CLASS_INDEX, CLASSES

from .data import CropSet, cell_groups, load_data, split_index
from .metrics import cell_accuracy, classification_metrics, review_triage


def bundle_split_path(model_path: Path) -> Path | None:
    """The split a bundle was trained with: ``NAME.split.json`` beside it, or a run's ``split.json``."""
    for candidate in (model_path.with_suffix("").with_suffix(".split.json"), model_path.parent / "split.json"):
        if candidate.is_file():
            return candidate
    return None


def classifier_with_split(model: str | None, purpose: str):
    """The classifier bundle (default: the shipped one) and the case split it was trained on:
    a later stage is fitted on the same training cases. Returns (classifier, split path, split)."""
    from chromodesk.inference.bundle import DEFAULT_MODEL
    from chromodesk.inference.classifier import Classifier

    model_path = Path(model) if model else DEFAULT_MODEL
    classifier = Classifier(model_path, device="auto")
    split_path = bundle_split_path(model_path)
    if split_path is None:
        raise InputError(model_path, f"no split.json beside the bundle: {purpose}")
    return classifier, split_path, json.loads(split_path.read_text())


def bundle_split(model_path: Path) -> dict | None:
    path = bundle_split_path(model_path)
    return json.loads(path.read_text()) if path else None


def select(data: CropSet, split: dict | None, part: str) -> CropSet:
    """``part`` of the training run's split; cases of sources never trained on count as test."""
    if part == "all" or split is None:
        return data
    keys = np.array([f"{s}/{c}" for s, c in zip(data.source, data.cases)])
    unseen = np.array([k not in split for k in keys])
    sel = split_index(data, split, part) | (unseen if part == "test" else False)
    return data.subset(sel)


def assigned_predictions(probs: np.ndarray, cells: np.ndarray, cfg: AssignmentConfig) -> tuple[np.ndarray, dict]:
    """Per-cell joint assignment; returns labels and per-cell analyses."""
    pred = probs.argmax(1).copy()
    analyses = {}
    for cell in np.unique(cells):
        idx = np.flatnonzero(cells == cell)
        if len(idx) < MIN_CELL_FOR_ASSIGNMENT:
            continue
        analysis = analyse_cell(probs[idx], cfg=cfg)
        pred[idx] = [CLASS_INDEX[label] for label in analysis.assigned]
        analyses[str(cell)] = analysis
    return pred, analyses


def read_findings(root: Path) -> dict[str, dict]:
    path = root / "cells.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {row["image"]: row for row in csv.DictReader(fh)}


def abnormality_truth(findings: dict[str, dict], data: CropSet) -> tuple[dict[str, bool], dict[str, str]]:
    """Cells usable as ground truth for numerical flags, and the excluded ones with the reason.

    Positive: a recorded numerical finding that the cell's own annotation shows (an autosome
    three times, or a sex complement other than XX/XY). Excluded: numerical findings the cell
    itself does not show (mosaics, e.g. 46-chromosome cells of a +21 case; the XX/XY chimera),
    findings without detail, structural and unknown findings. Negative: cells recorded normal.
    """
    truth, excluded = {}, {}
    for cell in np.unique(data.cells):
        row = findings.get(str(cell))
        if row is None:
            continue
        finding = row["finding"].strip()
        counts = {c: 0 for c in CLASSES}
        for label in data.labels[data.cells == cell]:
            counts[CLASSES[label]] += 1
        shows = is_numerically_abnormal(cell_flags(counts))
        if finding == "normal":
            truth[str(cell)] = False
        elif finding == "numerical":
            if shows:
                truth[str(cell)] = True
            else:
                excluded[str(cell)] = f"numerical '{row['finding_detail']}' recorded, not visible in this cell's annotation (mosaic or mislabelled)"
        else:
            excluded[str(cell)] = f"{finding or 'no'} finding"
    return truth, excluded


def flag_rates(analyses: dict, truth: dict[str, bool]) -> dict:
    tp = fn = tn = fp = 0
    for cell, positive in truth.items():
        if cell not in analyses:
            continue
        flagged = is_numerically_abnormal(analyses[cell].flags)
        tp += positive and flagged
        fn += positive and not flagged
        fp += (not positive) and flagged
        tn += (not positive) and not flagged
    return {
        "abnormal_sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "abnormal_specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "abnormal_counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
    }


def evaluate(model: str | None, data_paths: list[str], split: str = "test", split_file: str | None = None,
             assign: bool = True, quiet: bool = False, cfg: AssignmentConfig | None = None) -> dict:
    from chromodesk.inference.bundle import DEFAULT_MODEL
    from chromodesk.inference.classifier import Classifier

    t0 = time.time()
    model_path = Path(model) if model else DEFAULT_MODEL
    classifier = Classifier(model_path, device="auto")
    cfg = cfg or AssignmentConfig(**classifier.meta.training.get("assignment", {}))
    split_map = json.loads(Path(split_file).read_text()) if split_file else bundle_split(model_path)
    if split != "all" and split_map is None:
        raise InputError(model_path, "no split.json beside the bundle: pass --split-file or --split all")
    data, _ = load_data(data_paths, classifier.preprocess, quiet)
    data = select(data, split_map, split)
    if len(data) == 0:
        raise InputError(None, f"no chromosomes in the '{split}' split of the given data")
    each, probs = classifier.predict_cells(data.images, data.features, cell_groups(data.source, data.cells), data.companion)
    result = classification_metrics(probs, data.labels, data.cells)
    result.update({"model_id": classifier.model_id, "split": split, "device": str(classifier.device),
                   "cell_context": classifier.has_context})
    # the crop network alone, each chromosome on its own: what the context stage adds is visible
    result["crop_accuracy"] = float((each.argmax(1) == data.labels).mean())
    result["crop_cell_accuracy"] = cell_accuracy(each.argmax(1), data.labels, data.cells)
    result["review_triage"] = {"classifier": review_triage(probs, data.labels), "crop_network": review_triage(each, data.labels)}
    result["sources"] = {}
    assigned, analyses = (assigned_predictions(probs, data.cells, cfg) if assign else (None, {}))
    if assign:
        result["assigned_accuracy"] = float((assigned == data.labels).mean())
        result["assigned_cell_accuracy"] = cell_accuracy(assigned, data.labels, data.cells)
        result["assignment"] = cfg.__dict__
    for src in sorted(set(data.source.tolist())):
        sel = data.source == src
        m = classification_metrics(probs[sel], data.labels[sel], data.cells[sel])
        entry = {k: m[k] for k in ("n_chromosomes", "n_cells", "accuracy", "cell_accuracy", "macro_auc_ovr")}
        entry["crop_accuracy"] = float((each[sel].argmax(1) == data.labels[sel]).mean())
        entry["crop_cell_accuracy"] = cell_accuracy(each[sel].argmax(1), data.labels[sel], data.cells[sel])
        if assign:
            entry["assigned_accuracy"] = float((assigned[sel] == data.labels[sel]).mean())
            entry["assigned_cell_accuracy"] = cell_accuracy(assigned[sel], data.labels[sel], data.cells[sel])
        result["sources"][src] = entry
    if assign:
        for path in data_paths:
            root = Path(path.split(":")[0])
            findings = read_findings(root)
            if not findings:
                continue
            sub = data.subset(data.source == root.name)
            truth, excluded = abnormality_truth(findings, sub)
            result.update(flag_rates(analyses, truth))
            # does knowing the rest of the cell hurt where the cell is not normal? the chromosomes of
            # the cells with a visible numerical finding, scored by each stage
            positive = np.isin(data.cells, [c for c, p in truth.items() if p]) & (data.source == root.name)
            if positive.any():
                result["abnormal_cells"] = {
                    "n_cells": len({c for c, p in truth.items() if p}), "n_chromosomes": int(positive.sum()),
                    "crop_accuracy": float((each[positive].argmax(1) == data.labels[positive]).mean()),
                    "accuracy": float((probs[positive].argmax(1) == data.labels[positive]).mean()),
                    "assigned_accuracy": float((assigned[positive] == data.labels[positive]).mean())}
            result["abnormal_excluded"] = excluded
            result["abnormal_flagged_cells"] = {
                c: a.iscn for c, a in analyses.items() if c in truth and is_numerically_abnormal(a.flags)}
    result["seconds"] = time.time() - t0
    return result


def calibrate(model: str | None, data_path: str, parts=("train", "val"), quiet: bool = False,
              min_specificity: float = 0.95) -> dict:
    """Choose the assignment penalties on development cells (never the test split).

    Grid over a shared gain/loss penalty and the sex-complement penalty; pick the most
    sensitive setting whose specificity on normal cells is at least ``min_specificity``
    (if none reaches it, the most sensitive of all, then the most specific; the result
    says so in ``min_specificity_met``), ties broken by assigned per-chromosome accuracy.
    """
    from chromodesk.inference.bundle import DEFAULT_MODEL
    from chromodesk.inference.classifier import Classifier

    model_path = Path(model) if model else DEFAULT_MODEL
    classifier = Classifier(model_path, device="auto")
    split_map = bundle_split(model_path)
    data, _ = load_data([data_path], classifier.preprocess, quiet)
    if split_map is not None:
        keep = np.zeros(len(data), bool)
        for part in parts:
            keep |= split_index(data, split_map, part)
        data = data.subset(keep)
    findings = read_findings(Path(data_path))
    if not findings:
        raise InputError(Path(data_path) / "cells.csv", "calibration needs the cells.csv findings")
    truth, excluded = abnormality_truth(findings, data)
    cells_with_truth = np.isin(data.cells, list(truth))
    data = data.subset(cells_with_truth)
    _, probs = classifier.predict_cells(data.images, data.features, cell_groups(data.source, data.cells), data.companion)
    table = []
    for penalty in (2.0, 3.0, 4.0, 5.0, 6.0, 8.0):
        for sex_penalty in (2.0, 4.0, 6.0):
            cfg = AssignmentConfig(gain_penalty=penalty, loss_penalty=penalty, sex_penalty=sex_penalty)
            assigned, analyses = assigned_predictions(probs, data.cells, cfg)
            row = {"gain_penalty": penalty, "loss_penalty": penalty, "sex_penalty": sex_penalty,
                   "assigned_accuracy": float((assigned == data.labels).mean())}
            row.update(flag_rates(analyses, truth))
            table.append(row)
            if not quiet:
                print(json.dumps({k: v for k, v in row.items() if k != "abnormal_counts"}), flush=True)
    ok = [r for r in table if r["abnormal_specificity"] >= min_specificity]
    best = max(ok or table, key=lambda r: (r["abnormal_sensitivity"], r["abnormal_specificity"], r["assigned_accuracy"]))
    return {"chosen": {k: best[k] for k in ("gain_penalty", "loss_penalty", "sex_penalty")}, "chosen_row": best,
            "min_specificity": min_specificity, "min_specificity_met": bool(ok),
            "table": table, "parts": list(parts), "n_cells": len(truth), "excluded": excluded}
