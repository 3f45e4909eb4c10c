"""The cell-context stage as the app uses it: saved in the bundle, applied to a whole cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chromodesk.core.errors import InputError
from chromodesk.core.preprocess import FEATURE_NAMES, CellCrops, PreprocessConfig
from chromodesk.inference.bundle import BundleMeta, save_bundle
from chromodesk.inference.cell_context import ContextConfig
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
