"""Model bundles: a verified round trip, and every damaged or foreign bundle refused with a clear message."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from chromodesk.core.errors import InputError
from chromodesk.core.labels import CLASSES
from chromodesk.core.preprocess import PreprocessConfig
from chromodesk.inference.bundle import BundleMeta, bundle_paths, load_bundle, read_meta, save_bundle
from chromodesk.inference.network import ChromosomeNet


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One real resnet18 bundle, saved once for the module; tests work on copies of it."""
    torch.manual_seed(0)
    model = ChromosomeNet("resnet18")
    meta = BundleMeta(
        model_id="tiny-test-1", architecture="resnet18", input_size=48, preprocess=PreprocessConfig(size=48, margin=3),
        training={"epochs": 1, "flip_tta": True}, metrics={"val_accuracy": 0.5},
    )
    json_path = save_bundle(model, meta, tmp_path_factory.mktemp("bundle") / "tiny")
    return json_path, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def bundle(saved, tmp_path) -> Path:
    """A private copy of the saved bundle (json path) that a test may damage."""
    json_path, _ = saved
    for source in bundle_paths(json_path):
        shutil.copy(source, tmp_path / source.name)
    return tmp_path / json_path.name


def edit_json(json_path: Path, **changes) -> None:
    data = json.loads(json_path.read_text())
    data.update(changes)
    json_path.write_text(json.dumps(data))


def replace_weights(json_path: Path, data: bytes) -> Path:
    """Put other bytes in the weights file and make the checksum agree, as a careless or hostile editor would."""
    weights = bundle_paths(json_path)[1]
    weights.write_bytes(data)
    edit_json(json_path, weights_sha256=hashlib.sha256(data).hexdigest())
    return weights


def refused(json_path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_bundle(json_path)
    return str(info.value)


def test_round_trip(saved):
    json_path, state = saved
    weights = json_path.with_suffix(".safetensors")
    assert weights.is_file() and not list(json_path.parent.glob("*.tmp"))
    data = json.loads(json_path.read_text())
    assert data["classes"] == list(CLASSES) and data["architecture"] == "resnet18"
    assert data["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()

    model, meta = load_bundle(weights)  # either file of the bundle will do
    assert not model.training  # eval mode: dropout and batch norm statistics fixed
    assert (meta.model_id, meta.architecture, meta.input_size) == ("tiny-test-1", "resnet18", 48)
    assert meta.preprocess == PreprocessConfig(size=48, margin=3)
    assert meta.training == {"epochs": 1, "flip_tta": True} and meta.metrics == {"val_accuracy": 0.5}
    assert meta.classes == CLASSES
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_loaded_model_does_not_change_when_the_file_is_overwritten(bundle):
    # e.g. ``cp new.safetensors model.safetensors`` (same file, rewritten in place) while the app runs
    model, _ = load_bundle(bundle)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weights = bundle_paths(bundle)[1]
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:
        fh.seek(size // 4)
        fh.write(b"\x7f" * (size // 2))
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_bundle_paths_accept_either_file_or_the_stem(tmp_path):
    expected = (tmp_path / "m.json", tmp_path / "m.safetensors")
    assert bundle_paths(tmp_path / "m") == bundle_paths(tmp_path / "m.json") == bundle_paths(tmp_path / "m.safetensors") == expected


def test_flipped_byte_fails_the_checksum(bundle):
    weights = bundle_paths(bundle)[1]
    with open(weights, "r+b") as fh:  # one bit of one weight, in the middle of the tensor data
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte ^ 0x01]))
    message = refused(bundle)
    assert str(weights) in message and "checksum mismatch" in message


def test_wrong_class_order_is_refused(bundle):
    edit_json(bundle, classes=list(CLASSES[:22]) + ["Y", "X"])
    message = refused(bundle)
    assert str(bundle) in message and "class list differs" in message


def test_fewer_classes_are_refused(bundle):
    edit_json(bundle, classes=list(CLASSES[:23]))
    assert "class list differs" in refused(bundle)


def test_missing_weights_file(bundle):
    weights = bundle_paths(bundle)[1]
    weights.unlink()
    assert refused(bundle) == f"{weights}: model weights file not found"


def test_missing_bundle(tmp_path):
    assert refused(tmp_path / "nothing.json") == f"{tmp_path / 'nothing.json'}: model bundle not found"


def test_weights_of_another_architecture_are_refused(bundle):
    # the resnet18 weights, declared as vgg16 (the checksum still matches: only the JSON changed)
    edit_json(bundle, architecture="vgg16")
    message = refused(bundle)
    assert str(bundle_paths(bundle)[1]) in message
    assert "do not fit vgg16" in message and "tensors differ" in message


def test_unknown_architecture_is_refused(bundle):
    edit_json(bundle, architecture="resnet9000")
    assert "unknown architecture 'resnet9000'" in refused(bundle)


def test_unsupported_format_version(bundle):
    edit_json(bundle, format_version=99)
    assert "unsupported bundle format 99" in refused(bundle)


def test_input_size_must_match_the_preprocessing(bundle):
    edit_json(bundle, input_size=64)
    assert "input_size and preprocess.size disagree" in refused(bundle)


def test_missing_key(bundle):
    data = json.loads(bundle.read_text())
    del data["weights_sha256"]
    bundle.write_text(json.dumps(data))
    assert "lacks the key 'weights_sha256'" in refused(bundle)


@pytest.mark.parametrize("text", ["{not json", "[1, 2, 3]", '{"format_version": 1, "classes": null}'])
def test_malformed_metadata(bundle, text):
    bundle.write_text(text)
    message = refused(bundle)
    assert str(bundle) in message and "model metadata" in message


def test_malformed_value(bundle):
    edit_json(bundle, input_size="large")
    assert "model metadata" in refused(bundle)


class Payload:
    """Unpickling this would create a file: proof that something ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_disguised_as_safetensors_is_never_unpickled(bundle, tmp_path, writer):
    marker = tmp_path / "code-ran"
    if writer == "pickle":
        data = pickle.dumps({"conv.weight": Payload(marker)})
    else:
        torch.save({"conv.weight": Payload(marker)}, tmp_path / "model.pt")
        data = (tmp_path / "model.pt").read_bytes()
    weights = replace_weights(bundle, data)
    message = refused(bundle)
    assert str(weights) in message and "cannot read weights" in message
    assert not marker.exists()


def test_truncated_weights_with_matching_checksum(bundle):
    weights = bundle_paths(bundle)[1]
    replace_weights(bundle, weights.read_bytes()[:1000])
    assert "cannot read weights" in refused(bundle)


def test_read_meta_needs_no_weights(bundle):
    bundle_paths(bundle)[1].unlink()
    meta = read_meta(bundle)
    assert meta.model_id == "tiny-test-1" and meta.weights_file == "tiny.safetensors"
