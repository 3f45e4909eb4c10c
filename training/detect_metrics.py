"""Detection metrics (numpy only): VOC-style AP, one-to-one matching, count errors."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4+) with every box of ``b`` (m, 4+), x0 y0 x1 y1."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = np.asarray(a, float)[:, :4], np.asarray(b, float)[:, :4]
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_one_to_one(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> list[tuple[int, int]]:
    """Pairs (pred, truth) with IoU >= ``iou``, one-to-one, maximising the summed IoU."""
    m = iou_matrix(pred, truth)
    if m.size == 0:
        return []
    rows, cols = linear_sum_assignment(-np.where(m >= iou, m, 0.0))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if m[r, c] >= iou]


def greedy_hits(pred: np.ndarray, truth: np.ndarray, iou: float) -> np.ndarray:
    """VOC/COCO rule: detections by falling score take the best free truth above ``iou``."""
    hits = np.zeros(len(pred), bool)
    if len(pred) == 0 or len(truth) == 0:
        return hits
    order = np.argsort(-pred[:, 4], kind="stable")
    m = iou_matrix(pred[order], truth)
    taken = np.zeros(len(truth), bool)
    for k, i in enumerate(order):
        cand = np.where(taken, -1.0, m[k])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            taken[j] = True
            hits[i] = True
    return hits


def average_precision(preds: list[np.ndarray], truths: list[np.ndarray], iou: float = 0.5) -> float:
    """All-point interpolated AP over a set of images (one class), as VOC 2010+ and COCO."""
    scores, hits = [], []
    n_truth = sum(len(t) for t in truths)
    for p, t in zip(preds, truths):
        if len(p):
            scores.append(p[:, 4])
            hits.append(greedy_hits(p, t, iou))
    if not scores or n_truth == 0:
        return 0.0
    s, h = np.concatenate(scores), np.concatenate(hits)
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(h[order])
    fp = np.cumsum(~h[order])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, 1e-9)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def at_threshold(preds: list[np.ndarray], truths: list[np.ndarray], threshold: float, iou: float = 0.5) -> dict:
    """Recall, precision and count errors of the detections scored >= ``threshold``."""
    tp = n_pred = n_truth = 0
    errors = []
    for p, t in zip(preds, truths):
        kept = p[p[:, 4] >= threshold] if len(p) else p
        tp += len(match_one_to_one(kept, t, iou))
        n_pred += len(kept)
        n_truth += len(t)
        errors.append(len(kept) - len(t))
    errors = np.array(errors, float)
    return {"threshold": float(threshold), "recall": tp / max(n_truth, 1), "precision": tp / max(n_pred, 1),
            "f1": 2 * tp / max(n_pred + n_truth, 1), "median_count_error": float(np.median(np.abs(errors))) if len(errors) else 0.0,
            "mean_count_error": float(np.mean(np.abs(errors))) if len(errors) else 0.0,
            "mean_signed_count_error": float(np.mean(errors)) if len(errors) else 0.0}


def best_threshold(preds: list[np.ndarray], truths: list[np.ndarray], iou: float = 0.5) -> dict:
    """The score threshold with the best F1 (ties: the lower count error), on a coarse grid."""
    rows = [at_threshold(preds, truths, t, iou) for t in np.round(np.arange(0.05, 0.96, 0.025), 3)]
    return max(rows, key=lambda r: (round(r["f1"], 4), -r["mean_count_error"]))
