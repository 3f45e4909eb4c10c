"""A classifier with a companion crop network: two networks, one reading the chromosome cut
inside its outline and one reading it by threshold (neighbours included), averaged. What a user
relies on: the app makes both crops itself, the answer is the two networks' average, and a
companion that is not the one the bundle was fitted with is refused with a one-line error."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from chromodesk.core.errors import InputError
from chromodesk.core.preprocess import FEATURE_NAMES, PreprocessConfig, companion_config, preprocess_cell
from chromodesk.inference.bundle import BundleMeta, save_bundle
from chromodesk.inference.classifier import Classifier
from chromodesk.inference.network import ChromosomeNet

from tests.core.test_masks_core import crossing_cell, tight

SIZE = 48
MAIN = PreprocessConfig(size=SIZE, outlines=True, companion_crops=True)


def _save(folder, name, seed, pre, companion=None):
    torch.manual_seed(seed)
    meta = BundleMeta(model_id=name, architecture="resnet18", input_size=SIZE, preprocess=pre, companion=companion)
    return save_bundle(ChromosomeNet("resnet18"), meta, folder / name), meta


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(main with companion, main alone, companion alone) as bundles in one folder."""
    folder = tmp_path_factory.mktemp("pair")
    other, other_meta = _save(folder, "other", 1, companion_config(MAIN))
    entry = {"bundle": other.name, "weights_sha256": other_meta.weights_sha256, "weight": 0.5}
    main, _ = _save(folder, "main", 0, MAIN, entry)
    alone, _ = _save(folder, "alone", 0, replace(MAIN, companion_crops=False))
    return main, alone, other


def _load(path):
    return Classifier(path, device="cpu", orientation=False, segmentation=False)


def _crops(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(n, SIZE, SIZE)).astype(np.uint8)
    return images, rng.normal(0, 0.3, size=(n, len(FEATURE_NAMES))).astype(np.float32)


def test_the_answer_is_the_average_of_both_networks(pair):
    main, alone, other = pair
    images, features = _crops(5, 0)
    plain, plain_features = _crops(5, 1)
    both = _load(main).predict_arrays(images, features, companion=(plain, plain_features))
    expected = 0.5 * _load(alone).predict_arrays(images, features) + 0.5 * _load(other).predict_arrays(plain, plain_features)
    np.testing.assert_allclose(both, expected, atol=1e-5)
    np.testing.assert_allclose(both.sum(1), 1.0, atol=1e-5)


def test_without_the_companion_crops_it_says_what_is_missing(pair):
    images, features = _crops(3, 0)
    with pytest.raises(ValueError, match="companion crops"):
        _load(pair[0]).predict_arrays(images, features)


def test_a_different_companion_is_refused_naming_it(pair, tmp_path):
    main, _, other = pair
    for f in main.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    _save(tmp_path, "other", 7, companion_config(MAIN))  # same name, other weights
    with pytest.raises(InputError, match="other.json.*weights differ"):
        _load(tmp_path / main.name)


def test_a_companion_reading_other_crops_is_refused(pair, tmp_path):
    main, _, _ = pair
    other, meta = _save(tmp_path, "other", 1, replace(MAIN, companion_crops=False))  # outline crops: not its job
    data = json.loads(main.read_text())
    data["companion"]["weights_sha256"] = meta.weights_sha256
    (tmp_path / main.name).write_text(json.dumps(data))
    shutil.copy(main.with_suffix(".safetensors"), tmp_path / main.with_suffix(".safetensors").name)
    with pytest.raises(InputError, match="reads other crops"):
        _load(tmp_path / main.name)


def test_a_companion_outside_the_bundle_folder_is_refused(pair, tmp_path):
    main, _, _ = pair
    data = json.loads(main.read_text())
    data["companion"]["bundle"] = "../elsewhere/other.json"
    (tmp_path / main.name).write_text(json.dumps(data))
    with pytest.raises(InputError, match="beside the model"):
        _load(tmp_path / main.name)


def test_the_cell_gets_both_crops_and_a_hand_outline_cuts_both():
    gray, a, b = crossing_cell()
    boxes = [tight(a), tight(b)]
    masks = {}

    def segment(enhanced, bxs, regions):
        out = [m[r.ymin : r.ymax, r.xmin : r.xmax] for m, r in zip((a, b), regions)]
        masks.update(enumerate(out))
        return out

    cfg = replace(MAIN, size=64)
    cell = preprocess_cell(gray, boxes, cfg, segment=segment)
    # the model's crops are the outline crops, the companion's the threshold crops of the same config
    outline_only = preprocess_cell(gray, boxes, replace(cfg, companion_crops=False), segment=segment)
    threshold = preprocess_cell(gray, boxes, companion_config(cfg))
    assert np.array_equal(cell.images, outline_only.images) and outline_only.companion_images is None
    assert np.array_equal(cell.companion_images, threshold.images)
    np.testing.assert_allclose(cell.companion_features, threshold.features)
    assert not np.array_equal(cell.images, cell.companion_images)  # the crossing partner is only in the threshold crop
    # a technician's outline says what the chromosome is: both networks read the chromosome inside it
    hand = [masks[0], None]
    by_hand = preprocess_cell(gray, boxes, cfg, segment=segment, hand=hand)
    assert np.array_equal(by_hand.companion_images[0], by_hand.images[0])
    assert np.array_equal(by_hand.companion_images[1], threshold.images[1])
    # the app classifies a cell in chunks: each chunk carries its companion crops along
    part = cell.part(slice(1, 2))
    assert np.array_equal(part.companion_images, cell.companion_images[1:2])
    assert np.array_equal(part.companion_features, cell.companion_features[1:2])


def test_the_flag_keeps_older_crop_caches():
    assert replace(PreprocessConfig(), companion_crops=False).digest() == "33d76a48dcec"
    assert companion_config(MAIN) == PreprocessConfig(size=SIZE)
