"""Negatives for the "not a chromosome" head, its threshold rule and its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.detect_metrics import iou_matrix
from training.reject import (_covered, background_boxes, choose_threshold, fit_head, fragment_boxes, jittered,
                             merged_boxes, reject_report, reject_scores)

TRUTH = np.array([[10, 10, 40, 90], [30, 60, 110, 90], [200, 200, 230, 280], [300, 50, 380, 80]], float)


def test_background_boxes_hold_no_chromosome():
    boxes = background_boxes(TRUTH, (400, 500), 20, np.random.default_rng(0))
    assert len(boxes) == 20
    assert (_covered(boxes, TRUTH) <= 0.15).all()
    assert (boxes[:, 2] <= 500).all() and (boxes[:, 3] <= 400).all() and (boxes[:, :2] >= 0).all()


def test_merged_fragment_and_shifted_boxes():
    rng = np.random.default_rng(1)
    merged = merged_boxes(TRUTH, 4, rng)
    assert len(merged) == 1  # only the first two boxes touch
    assert iou_matrix(merged, TRUTH).max() < 0.5 and _covered(merged, TRUTH)[0] == 1.0
    frags = fragment_boxes(TRUTH, 4, rng)
    assert (iou_matrix(frags, TRUTH).max(1) <= 0.5 + 1e-9).all() and (iou_matrix(frags, TRUTH).max(1) >= 0.3 - 1e-9).all()
    shifted = jittered(TRUTH, rng)
    assert (np.diag(iou_matrix(shifted, TRUTH)) > 0.55).all()


def _rows(n_pos=200, n_neg=100, seed=0):
    rng = np.random.default_rng(seed)
    emb = np.r_[rng.normal(0, 1, (n_pos, 8)), rng.normal(4.0, 1, (n_neg, 8))].astype(np.float32)
    kind = np.array(["chromosome"] * n_pos + ["background"] * (n_neg // 2) + ["fragment"] * (n_neg - n_neg // 2))
    labels = np.r_[rng.integers(0, 24, n_pos), np.full(n_neg, -1)]
    probs = np.full((n_pos + n_neg, 24), 0.01, np.float32)
    probs[np.arange(n_pos), labels[:n_pos]] = 0.9
    covered = np.r_[np.ones(n_pos), np.zeros(n_neg // 2), np.full(n_neg - n_neg // 2, 0.4)]  # fragments hold a piece
    return {"emb": emb, "feat": np.zeros((n_pos + n_neg, 5), np.float32), "target": np.r_[np.zeros(n_pos), np.ones(n_neg)],
            "kind": kind, "label": labels, "probs": probs, "covered": covered}


def test_the_head_learns_to_reject_and_the_threshold_spares_chromosomes():
    from training.reject import RejectTrainConfig

    train, val = _rows(seed=0), _rows(seed=1)
    head = fit_head(train, RejectTrainConfig(kind="embedding", hidden=8, epochs=60, box_features=False), embedding_width=8)
    scores = reject_scores(head, val, False)
    t = choose_threshold(scores, val, max_positive_reject=0.01)
    report = reject_report(scores, val, t)
    assert report["chromosomes_rejected"] <= 0.01
    assert report["empty_boxes_rejected"] > 0.8 and report["negatives"]["background"]["n"] == 50
    assert report["accuracy_loss_points"] == pytest.approx(100 * report["chromosomes_rejected"], abs=1e-9)
    # the acceptance's own set: boxes of any source that hold (almost) no chromosome
    assert report["nothing_inside_n"] == 50 and report["nothing_inside_rejected"] > 0.8


def _crop_rows(n_pos=160, n_neg=80, seed=0):
    """Positives: a dark bar (a chromosome, cut out and upright, on white); negatives: a faint
    blob or nothing (background and debris). Features say nothing: the crops must."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n_pos + n_neg, 64, 64), np.uint8)
    for i in range(n_pos):
        w, h = rng.integers(8, 20), rng.integers(30, 60)
        x, y = (64 - w) // 2, (64 - h) // 2
        img[i, y : y + h, x : x + w] = rng.integers(120, 250)
    for i in range(n_pos, n_pos + n_neg):
        if i % 2:
            r = rng.integers(10, 25)
            yy, xx = np.mgrid[:64, :64]
            img[i][(yy - 32) ** 2 + (xx - 32) ** 2 < r * r] = rng.integers(20, 60)
    rows = _rows(n_pos, n_neg, seed)
    rows["img"] = img
    return rows


def test_the_crop_network_learns_what_holds_a_chromosome():
    from training.reject import RejectNet, RejectTrainConfig

    head = fit_head(_crop_rows(seed=0), RejectTrainConfig(kind="crops", hidden=8, epochs=6, box_features=False), embedding_width=8)
    assert isinstance(head, RejectNet)
    val = _crop_rows(seed=1)
    scores = reject_scores(head, val, False)
    report = reject_report(scores, val, choose_threshold(scores, val, max_positive_reject=0.01))
    assert report["chromosomes_rejected"] <= 0.01 and report["empty_boxes_rejected"] > 0.9


def test_rows_made_in_worker_processes_are_the_rows_made_in_one(tmp_path, one_torch_thread):
    """``reject --workers 2`` must teach the same boxes as one process (each image has its own
    random stream), and the cache gives them back unchanged."""
    from chromodesk.inference.classifier import Classifier
    from training.reject import RejectTrainConfig, collect

    samples = Path(__file__).resolve().parents[2] / "resources" / "samples"
    paths = [samples / "103201.jpg", samples / "1054073.jpg"]
    classifier = Classifier(device="cpu")
    cfg = RejectTrainConfig(negatives_per_kind=3)
    one = collect(paths, classifier, cfg, None, 5, True, True)
    two = collect(paths, classifier, cfg, None, 5, True, True, cache=tmp_path, workers=2)
    cached = collect(paths, classifier, cfg, None, 5, True, True, cache=tmp_path)
    assert set(one) == set(two) == set(cached)
    assert (one["kind"] == "background").sum() == 6 and (one["image"] == "1054073").any()
    for k in one:
        for other in (two, cached):
            if one[k].dtype.kind == "f":
                np.testing.assert_allclose(one[k], other[k], atol=1e-5, err_msg=k)
            else:
                np.testing.assert_array_equal(one[k], other[k], err_msg=k)
