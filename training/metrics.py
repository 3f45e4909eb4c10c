"""Classification metrics from probabilities (numpy only): the keys other tools rely on."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from chromodesk.core.export import SURE_CONFIDENCE
from chromodesk.core.labels import CLASSES


def roc_auc_ovr(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC (Mann-Whitney U form), over classes present with both outcomes."""
    aucs = []
    for k in range(probs.shape[1]):
        pos = labels == k
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(probs[:, k])
        aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else float("nan")


def cell_accuracy(pred: np.ndarray, labels: np.ndarray, cells: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    right = pred == labels
    cell_ok: dict[str, bool] = {}
    for c, ok in zip(cells.tolist(), right.tolist()):
        cell_ok[c] = cell_ok.get(c, True) and ok
    return float(np.mean(list(cell_ok.values())))


def classification_metrics(probs: np.ndarray, labels: np.ndarray, cells: np.ndarray, pred: np.ndarray | None = None) -> dict:
    pred = probs.argmax(1) if pred is None else pred
    k = len(CLASSES)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, name in enumerate(CLASSES):
        tp = confusion[i, i]
        support = confusion[i].sum()
        predicted = confusion[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(support)}
    return {
        "n_chromosomes": int(len(labels)),
        "n_cells": int(len(set(cells.tolist()))),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "cell_accuracy": cell_accuracy(pred, labels, cells),
        "macro_auc_ovr": roc_auc_ovr(probs, labels),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def review_triage(probs: np.ndarray, labels: np.ndarray, threshold: float = SURE_CONFIDENCE) -> dict:
    """What the technician's review sees: the app marks a label sure at ``threshold`` (green) and
    asks to check the rest. A useful classifier marks few sure-but-wrong and most errors unsure."""
    conf = probs.max(1)
    right = probs.argmax(1) == labels
    sure = conf >= threshold
    return {"threshold": threshold, "share_marked_sure": float(sure.mean()) if len(sure) else float("nan"),
            "error_among_sure": float(1 - right[sure].mean()) if sure.any() else float("nan"),
            "errors_marked_unsure": float((~right & ~sure).sum() / max(int((~right).sum()), 1))}
