"""The classifier as callers use it: device choice, and batched probabilities from a real (tiny) bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromodesk.core.errors import InputError
from chromodesk.core.labels import CLASSES
from chromodesk.core.preprocess import FEATURE_NAMES, CellCrops, PreprocessConfig
from chromodesk.inference.bundle import BundleMeta, save_bundle
from chromodesk.inference.classifier import Classifier, choose_device
from chromodesk.inference.network import ChromosomeNet

SIZE = 48
NO_CUDA = not torch.cuda.is_available()
NO_MPS = not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Classifier:
    torch.manual_seed(0)
    meta = BundleMeta(model_id="tiny-classifier", architecture="resnet18", input_size=SIZE,
                      preprocess=PreprocessConfig(size=SIZE))
    path = save_bundle(ChromosomeNet("resnet18"), meta, tmp_path_factory.mktemp("bundle") / "tiny")
    return Classifier(path, device="cpu", batch_size=64)


def crops(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` different bright-on-black pictures with structure (a bar of varying length) and features."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        top = 4 + 3 * i
        images[i, top : SIZE - 6, 18:28] = rng.integers(80, 255, size=(SIZE - 6 - top, 10))
    features = rng.normal(0, 0.3, size=(n, len(FEATURE_NAMES))).astype(np.float32)
    return images, features


# -- device --------------------------------------------------------------------------------------
def test_choose_device_cpu():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(not (NO_CUDA and NO_MPS), reason="an accelerator is present")
def test_auto_falls_back_to_cpu():
    assert choose_device("auto") == torch.device("cpu")
    assert choose_device(None) == torch.device("cpu")


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
@pytest.mark.parametrize("request_", ["cuda", "cuda:0"])
def test_cuda_request_without_cuda_is_an_error(request_):
    with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
        choose_device(request_)


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_classifier_refuses_cuda_before_loading_anything(tmp_path):
    with pytest.raises(RuntimeError, match="CUDA"):
        Classifier(tmp_path / "absent.json", device="cuda")


def test_missing_bundle_names_the_file(tmp_path):
    with pytest.raises(InputError) as info:
        Classifier(tmp_path / "absent.json", device="cpu")
    assert str(info.value) == f"{tmp_path / 'absent.json'}: model bundle not found"


# -- prediction --------------------------------------------------------------------------------------
def test_classifier_reports_its_bundle(classifier):
    assert classifier.model_id == "tiny-classifier"
    assert classifier.preprocess == PreprocessConfig(size=SIZE)
    assert classifier.device == torch.device("cpu")
    assert not classifier.model.training


def test_predict_arrays_gives_probabilities_over_the_24_classes(classifier):
    images, features = crops(5)
    probs = classifier.predict_arrays(images, features)
    assert probs.shape == (5, len(CLASSES)) and probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(probs[0], probs[-1])  # different pictures, different answers


def test_empty_input(classifier):
    probs = classifier.predict_arrays(np.zeros((0, SIZE, SIZE), np.uint8), np.zeros((0, len(FEATURE_NAMES)), np.float32))
    assert probs.shape == (0, 24)


def test_batches_do_not_change_the_answer(classifier):
    images, features = crops(5)
    whole = classifier.predict_arrays(images, features)
    classifier.batch_size = 2
    try:
        in_pieces = classifier.predict_arrays(images, features)
    finally:
        classifier.batch_size = 64
    np.testing.assert_allclose(in_pieces, whole, atol=1e-5)
    np.testing.assert_allclose(classifier.predict_arrays(images[3:4], features[3:4]), whole[3:4], atol=1e-5)


@pytest.mark.parametrize("flip", [(1, 2), (1,), (2,)], ids=["turned", "mirrored top-bottom", "mirrored left-right"])
def test_an_upside_down_or_mirrored_chromosome_gets_the_same_answer(classifier, flip):
    images, features = crops(3)
    turned = np.ascontiguousarray(np.flip(images, axis=flip))
    assert classifier.flip_tta
    np.testing.assert_allclose(classifier.predict_arrays(turned, features),
                               classifier.predict_arrays(images, features), atol=1e-5)
    classifier.flip_tta = False  # without the averaging the network alone does see the difference
    try:
        assert not np.allclose(classifier.predict_arrays(turned, features),
                               classifier.predict_arrays(images, features), atol=1e-6)
    finally:
        classifier.flip_tta = True


def test_float64_features_are_accepted(classifier):
    images, features = crops(2)
    np.testing.assert_allclose(classifier.predict_arrays(images, features.astype(np.float64)),
                               classifier.predict_arrays(images, features), atol=1e-6)


def test_mismatched_crops_and_features(classifier):
    images, features = crops(3)
    with pytest.raises(ValueError, match="3 crops but 2 feature rows"):
        classifier.predict_arrays(images, features[:2])


def test_predict_takes_a_cell(classifier):
    images, features = crops(4)
    cell = CellCrops(images, features)
    np.testing.assert_array_equal(classifier.predict(cell), classifier.predict_arrays(images, features))
