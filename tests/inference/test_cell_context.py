"""The cell-context stage as the app uses it: saved in the bundle, applied to a whole cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chromodesk.core.errors import InputError
from chromodesk.core.preprocess import FEATURE_NAMES, CellCrops, PreprocessConfig
from chromodesk.inference.bundle import BundleMeta, save_bundle
from chromodesk.core.labels import CLASS_INDEX, CLASSES
from chromodesk.inference.cell_context import CellContext, ContextConfig, assignment_onehot
from chromodesk.inference.classifier import Classifier
from chromodesk.inference.network import ChromosomeNet

SIZE = 40
SMALL = ContextConfig(dim=32, layers=1, heads=2, members=2)


def _cell(n: int = 12, seed: int = 0) -> CellCrops:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        images[i, 4 + 2 * i : SIZE - 4, 14:26] = rng.integers(60, 255, size=(SIZE - 8 - 2 * i, 12))
    features = rng.normal(0, 0.3, size=(n, len(FEATURE_NAMES))).astype(np.float32)
    return CellCrops(images, features, [{} for _ in range(n)])


def _bundle(tmp_path, context: ContextConfig | None, trained: bool):
    torch.manual_seed(0)
    net = ChromosomeNet("resnet18", context=context)
    if context is not None and trained:  # a fitted stage: non-zero correction
        for member in net.context.members:
            torch.nn.init.normal_(member.correction.weight, std=0.5)
    meta = BundleMeta(model_id="ctx-test", architecture="resnet18", input_size=SIZE,
                      preprocess=PreprocessConfig(size=SIZE), context=context)
    return save_bundle(net, meta, tmp_path / "ctx")


def test_bundle_without_context_predicts_each_chromosome_alone(tmp_path):
    classifier = Classifier(_bundle(tmp_path, None, False), device="cpu")
    cell = _cell()
    assert not classifier.has_context
    np.testing.assert_allclose(classifier.predict(cell), classifier.predict_each(cell), atol=1e-6)


def test_untrained_context_stage_returns_the_crop_network_unchanged(tmp_path):
    classifier = Classifier(_bundle(tmp_path, SMALL, False), device="cpu")
    cell = _cell()
    assert classifier.has_context
    np.testing.assert_allclose(classifier.predict(cell), classifier.predict_each(cell), atol=1e-5)


def test_context_stage_is_saved_loaded_and_reads_the_whole_cell(tmp_path):
    path = _bundle(tmp_path, SMALL, True)
    assert json.loads(path.read_text())["context"]["dim"] == SMALL.dim
    classifier = Classifier(path, device="cpu")
    cell = _cell()
    whole = classifier.predict(cell)
    assert whole.shape == (12, 24)
    np.testing.assert_allclose(whole.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(whole, classifier.predict_each(cell), atol=1e-3)
    # one chromosome's answer depends on the others: the same crop in a smaller cell reads differently
    part = CellCrops(cell.images[:4], cell.features[:4], cell.raw[:4])
    assert not np.allclose(classifier.predict(part)[0], whole[0], atol=1e-4)


def test_order_of_the_boxes_does_not_change_any_label(tmp_path):
    classifier = Classifier(_bundle(tmp_path, SMALL, True), device="cpu")
    cell = _cell()
    order = np.random.default_rng(1).permutation(12)
    shuffled = CellCrops(cell.images[order], cell.features[order], [cell.raw[i] for i in order])
    np.testing.assert_allclose(classifier.predict(shuffled), classifier.predict(cell)[order], atol=1e-5)


def test_malformed_context_entry_names_the_bundle(tmp_path):
    path = _bundle(tmp_path, SMALL, True)
    data = json.loads(path.read_text())
    data["context"] = {"dim": "wide", "layers": 1, "heads": 2}
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="ctx.json: model metadata has a malformed value"):
        Classifier(path, device="cpu")


def _normal_cell_probs(ambiguous_row: int | None = None) -> np.ndarray:
    """46 chromosomes of a 46,XY cell, each clearly its class; optionally one 22 that the crop
    network calls a 21 by a hair (a third 21, where the cell lacks a 22)."""
    labels = [c for c in CLASSES[:22] for _ in range(2)] + ["X", "Y"]
    probs = np.full((46, 24), 0.01 / 23, np.float32)
    probs[np.arange(46), [CLASS_INDEX[c] for c in labels]] = 0.99
    if ambiguous_row is not None:
        probs[ambiguous_row] = 0.0
        probs[ambiguous_row, CLASS_INDEX["21"]], probs[ambiguous_row, CLASS_INDEX["22"]] = 0.52, 0.48
    return probs


def test_assignment_onehot_settles_a_look_alike_by_the_counts():
    row = 43  # the second 22
    assert CLASSES[row // 2] == "22"
    onehot = assignment_onehot(_normal_cell_probs(row), (4.0, 4.0, 6.0))
    assert onehot.sum(1).tolist() == [1.0] * 46
    assert onehot[row].argmax() == CLASS_INDEX["22"]  # not a third 21
    # a few boxes are not a cell: counts mean nothing there, so no assignment is given
    assert not assignment_onehot(_normal_cell_probs(row)[:12], (4.0, 4.0, 6.0)).any()


def test_context_stage_that_reads_the_assignment_is_saved_and_uses_it(tmp_path):
    with_assignment = ContextConfig(dim=32, layers=1, heads=2, assignment=(4.0, 4.0, 6.0))
    path = _bundle(tmp_path, with_assignment, True)
    assert json.loads(path.read_text())["context"]["assignment"] == [4.0, 4.0, 6.0]
    classifier = Classifier(path, device="cpu")
    assert classifier.model.context.cfg.assignment == (4.0, 4.0, 6.0)
    probs = _normal_cell_probs(43)
    features = np.zeros((46, len(FEATURE_NAMES)), np.float32)
    out = classifier.in_context(probs, features)
    assert out.shape == (46, 24) and np.allclose(out.sum(1), 1.0, atol=1e-5)
    # the stage's input really is the assignment: another assignment gives other probabilities
    context: CellContext = classifier.model.context
    logp = torch.from_numpy(np.log(np.clip(probs, 1e-6, 1)))[None]
    feats = torch.from_numpy(features)[None]
    onehot = torch.from_numpy(assignment_onehot(probs, (4.0, 4.0, 6.0)))[None]
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(context(logp, feats, assigned=onehot), -1)[0].numpy(), out, atol=1e-5)
        assert not torch.allclose(context(logp, feats, assigned=onehot), context(logp, feats, assigned=onehot.roll(1, 1)))
    with pytest.raises(ValueError, match="needs the cell's assignment"):
        context(logp, feats)


def test_stage_of_two_members_only_one_of_which_reads_the_assignment(tmp_path):
    mixed = ContextConfig(dim=32, layers=1, heads=2, members=2, assignment=(4.0, 4.0, 6.0), assignment_members=1)
    path = _bundle(tmp_path, mixed, True)
    assert json.loads(path.read_text())["context"]["assignment_members"] == 1
    context: CellContext = Classifier(path, device="cpu").model.context
    assert [m.reads_assignment for m in context.members] == [True, False]
    probs = _normal_cell_probs(43)
    logp = torch.from_numpy(np.log(np.clip(probs, 1e-6, 1)))[None]
    feats = torch.zeros(1, 46, len(FEATURE_NAMES))
    onehot = torch.from_numpy(assignment_onehot(probs, (4.0, 4.0, 6.0)))[None]
    with torch.no_grad():
        reader, plain = context.members
        assert torch.equal(plain(logp, feats, None, onehot), plain(logp, feats, None, onehot.roll(1, 1)))
        assert not torch.allclose(reader(logp, feats, None, onehot), reader(logp, feats, None, onehot.roll(1, 1)))
        # the stage's answer is the two members' probabilities averaged
        both = torch.softmax(reader(logp, feats, None, onehot), -1) + torch.softmax(plain(logp, feats, None, None), -1)
        np.testing.assert_allclose(torch.softmax(context(logp, feats, assigned=onehot), -1).numpy(), (both / 2).numpy(),
                                   atol=1e-5)
