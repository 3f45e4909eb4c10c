"""The classifier's "not a chromosome" outcome: the reject head in the bundle and in the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromodesk.core.preprocess import FEATURE_NAMES, PreprocessConfig
from chromodesk.inference.bundle import BundleMeta, load_bundle, save_bundle
from chromodesk.inference.classifier import Classifier
from chromodesk.inference.network import ChromosomeNet, RejectConfig

SIZE = 48


def _bundle(path, threshold: float, bias: float):
    """A tiny bundle whose reject head answers ``sigmoid(bias)`` for every box."""
    torch.manual_seed(0)
    cfg = RejectConfig(hidden=8, threshold=threshold)
    net = ChromosomeNet("resnet18", reject=cfg)
    with torch.no_grad():
        for p in net.reject.parameters():
            p.zero_()
        net.reject.net[-1].bias.fill_(bias)
    meta = BundleMeta(model_id="tiny-reject", architecture="resnet18", input_size=SIZE,
                      preprocess=PreprocessConfig(size=SIZE), reject=cfg)
    return save_bundle(net, meta, path)


def _crops(n: int):
    from chromodesk.core.preprocess import CellCrops

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, SIZE, SIZE), dtype=np.uint8)
    return CellCrops(images, rng.normal(0, 0.3, (n, len(FEATURE_NAMES))).astype(np.float32), [{} for _ in range(n)])


def test_bundle_round_trip_keeps_the_head_and_its_threshold(tmp_path):
    path = _bundle(tmp_path / "b", threshold=0.8, bias=2.0)
    model, meta = load_bundle(path)
    assert meta.reject == RejectConfig(hidden=8, threshold=0.8)
    assert model.reject is not None


@pytest.mark.parametrize("bias, rejected", [(3.0, True), (-3.0, False)])
def test_predict_cell_rejects_above_the_threshold(tmp_path, bias, rejected):
    clf = Classifier(_bundle(tmp_path / "b", threshold=0.5, bias=bias), device="cpu")
    probs, reject_p, flags = clf.predict_cell(_crops(5))
    assert probs.shape == (5, 24) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(reject_p, 1 / (1 + np.exp(-bias)), atol=1e-5)
    assert flags.tolist() == [rejected] * 5


def test_rejected_boxes_do_not_enter_the_cell_context_stage(tmp_path):
    clf = Classifier(_bundle(tmp_path / "b", threshold=0.5, bias=-3.0), device="cpu")
    seen = []
    clf.in_context = lambda p, f: seen.append(len(p)) or p  # record what the stage is given
    probs = np.full((4, 24), 1 / 24, np.float32)
    _, flags = clf.finish_cell(probs, np.array([0.1, 0.9, 0.2, 0.95]), np.zeros((4, 5), np.float32))
    assert flags.tolist() == [False, True, False, True] and seen == [2]


def test_a_bundle_without_the_head_rejects_nothing(tmp_path):
    torch.manual_seed(0)
    meta = BundleMeta(model_id="plain", architecture="resnet18", input_size=SIZE, preprocess=PreprocessConfig(size=SIZE))
    clf = Classifier(save_bundle(ChromosomeNet("resnet18"), meta, tmp_path / "p"), device="cpu")
    assert not clf.has_reject
    _, reject_p, flags = clf.predict_cell(_crops(3))
    assert not flags.any() and not reject_p.any()


def test_reject_probabilities_match_one_crop_at_a_time(tmp_path):
    """Batching and the four-flip average give each crop the same answer alone or in a batch."""
    clf = Classifier(_bundle(tmp_path / "b", threshold=0.5, bias=0.0), device="cpu")
    with torch.no_grad():
        torch.manual_seed(1)
        for p in clf.model.reject.parameters():
            p.normal_(0, 0.1)
    crops = _crops(6)
    _, together = clf.predict_each_with_reject(crops)
    alone = [clf.predict_arrays(crops.images[i : i + 1], crops.features[i : i + 1], with_reject=True)[1][0] for i in range(6)]
    assert np.allclose(together, alone, atol=1e-5) and together.std() > 0


def test_the_pipeline_keeps_a_rejected_box_out_of_the_cell(tmp_path):
    """47 boxes, one on debris: the JSON counts 46, says which box is no chromosome, and the ISCN is 46,XY."""
    import cv2

    from chromodesk.core.document import Box, Karyotype
    from chromodesk.core.labels import CLASSES
    from chromodesk.pipeline import AnalysisResult, classify_document

    labels = [c for c in CLASSES[:22] for _ in range(2)] + ["X", "Y"]
    gray = np.full((700, 900), 230, np.uint8)
    doc = Karyotype(str(tmp_path / "c.png"), "", 900, 700)
    for i in range(47):
        x, y = 20 + 90 * (i % 10), 20 + 130 * (i // 10)
        cv2.rectangle(gray, (x + 20, y + 10), (x + 40, y + 70), 60, -1)
        doc.add(Box(x + 10, y, x + 50, y + 80))

    class Fake:
        model_id, preprocess, has_reject = "fake", PreprocessConfig(size=SIZE, nlm_h=0.0), True

        def predict_cell(self, crops):
            n = len(crops.images)
            probs = np.full((n, 24), 0.001)
            for i in range(n):
                probs[i, CLASSES.index(labels[i % 46])] = 0.9
            reject_p = np.zeros(n)
            reject_p[46] = 0.99
            return probs / probs.sum(1, keepdims=True), reject_p, reject_p > 0.5

    cell = classify_document(doc, gray, Fake())
    out = AnalysisResult(doc, None, cell).to_json()
    assert out["count"] == 46 and out["boxes"] == 47 and out["iscn"] == "46,XY"
    assert [c["not_a_chromosome"] for c in out["chromosomes"]].count(True) == 1
    assert out["chromosomes"][46]["not_a_chromosome"] and out["chromosomes"][46]["label"] is None
    assert out["chromosomes"][46]["reject_probability"] == 0.99


def test_a_crop_head_bundle_round_trips_and_answers_per_crop(tmp_path):
    """The crop kind of head is saved with its kind and gives each crop the same answer alone or in a batch."""
    torch.manual_seed(0)
    cfg = RejectConfig(hidden=8, threshold=0.6, kind="crops")
    net = ChromosomeNet("resnet18", reject=cfg)
    meta = BundleMeta(model_id="crop-reject", architecture="resnet18", input_size=SIZE,
                      preprocess=PreprocessConfig(size=SIZE), reject=cfg)
    clf = Classifier(save_bundle(net, meta, tmp_path / "c"), device="cpu")
    assert clf.meta.reject == cfg and clf.reject_threshold == 0.6
    crops = _crops(5)
    _, together = clf.predict_each_with_reject(crops)
    alone = [clf.predict_arrays(crops.images[i : i + 1], crops.features[i : i + 1], with_reject=True)[1][0] for i in range(5)]
    assert np.allclose(together, alone, atol=1e-5) and together.std() > 0


def test_an_old_bundle_without_a_head_kind_reads_the_embedding():
    assert RejectConfig.from_dict({"hidden": 64, "threshold": 0.9}).kind == "embedding"
    with pytest.raises(ValueError, match="kind"):
        RejectConfig.from_dict({"hidden": 64, "threshold": 0.9, "kind": "pixels"})


def test_a_head_with_box_features_reads_them_and_round_trips(tmp_path):
    """A head that reads how each box sits on its content answers from those columns, and says
    so when a caller forgets them instead of reading the wrong features."""
    from chromodesk.core.preprocess import BOX_FEATURE_NAMES

    torch.manual_seed(0)
    cfg = RejectConfig(hidden=8, threshold=0.5, box_features=True)
    meta = BundleMeta(model_id="box-reject", architecture="resnet18", input_size=SIZE,
                      preprocess=PreprocessConfig(size=SIZE), reject=cfg)
    clf = Classifier(save_bundle(ChromosomeNet("resnet18", reject=cfg), meta, tmp_path / "b"), device="cpu")
    assert clf.meta.reject.box_features
    crops = _crops(2)
    with pytest.raises(ValueError, match="box features"):
        clf.predict_arrays(crops.images, crops.features, with_reject=True)
    rf = np.concatenate([crops.features, np.zeros((2, len(BOX_FEATURE_NAMES)), np.float32)], 1)
    crops.reject_features = rf
    probs, before = clf.predict_each_with_reject(crops)
    crops.reject_features = rf + np.r_[[0.0] * len(FEATURE_NAMES), [1.0, 0.5, 2.0]].astype(np.float32)
    probs_after, after = clf.predict_each_with_reject(crops)
    assert np.abs(after - before).min() > 1e-4  # only the box columns changed, and the answer did
    np.testing.assert_allclose(probs, probs_after)  # the classifier itself never reads them


def test_a_crafted_box_features_flag_is_refused_with_the_file_named(tmp_path):
    import json

    from chromodesk.core.errors import InputError

    path = _bundle(tmp_path / "b", threshold=0.5, bias=0.0)
    data = json.loads(path.read_text())
    data["reject"]["box_features"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="box_features") as info:
        load_bundle(path)
    assert path.name in str(info.value)


def test_a_box_the_detector_doubted_counts_only_where_the_cell_has_room(tmp_path, monkeypatch):
    """45 sure boxes (one 7 missing) and two the detector scored under its threshold: the one that
    reads as the missing 7 joins the cell (46,XY), a third 12 stays "not a chromosome"."""
    import cv2

    from chromodesk.core.document import Box, Karyotype
    from chromodesk.core.labels import CLASSES
    from chromodesk.pipeline import AnalysisResult, classify_document

    labels = [c for c in CLASSES[:22] for _ in range(2)] + ["X", "Y"]
    labels.remove("7")
    labels += ["7", "12"]  # the two doubted boxes, last
    gray = np.full((700, 900), 230, np.uint8)
    doc = Karyotype(str(tmp_path / "c.png"), "", 900, 700)
    for i, _ in enumerate(labels):
        x, y = 20 + 90 * (i % 10), 20 + 130 * (i // 10)
        cv2.rectangle(gray, (x + 20, y + 10), (x + 40, y + 70), 60, -1)
        doc.add(Box(x + 10, y, x + 50, y + 80), origin="detected", doubt=1.5 if i >= 45 else 0.0)
    clf = Classifier(_bundle(tmp_path / "b", threshold=0.5, bias=-3.0), device="cpu")

    def answers(crops):
        probs = np.full((len(labels), 24), 0.002)
        for i, lab in enumerate(labels):
            probs[i, CLASSES.index(lab)] = 0.95
        return probs / probs.sum(1, keepdims=True), np.full(len(labels), 0.05)

    monkeypatch.setattr(clf, "predict_each_with_reject", answers)
    cell = classify_document(doc, gray, clf)
    out = AnalysisResult(doc, None, cell, "detected").to_json()
    assert out["count"] == 46 and out["iscn"] == "46,XY"
    assert [c["not_a_chromosome"] for c in out["chromosomes"]] == [False] * 46 + [True]
    assert out["chromosomes"][45]["label"] == "7" and out["chromosomes"][45]["detector_doubt"] == 1.5
