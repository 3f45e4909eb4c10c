"""The shipped p-arm orientation network: a verified bundle, one forward pass for all 24 classes,
right on real karyogram crops both ways up, and run wherever the classifier's crops are made."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.errors import InputError
from chromodesk.core.labels import CLASS_INDEX, CLASSES, normalize_label
from chromodesk.core.preprocess import PreprocessConfig, preprocess_crops
from chromodesk.inference.orientation import DEFAULT_ORIENTATION, Orienter, find_orienter, load_orientation
from chromodesk.inference.orientation_net import OrientationNet

from ..conftest import SHARED

KARYOGRAMS = SHARED / "gband-karyogram-chromosomes"


@pytest.fixture(scope="module")
def orienter() -> Orienter:
    return Orienter()


def test_all_24_classes_in_one_pass_equal_one_class_at_a_time():
    torch.manual_seed(0)
    net = OrientationNet().eval()
    x = torch.randn(5, 1, 64, 64)
    with torch.inference_mode():
        every = net.every_class(x)
        one = torch.stack([net(x, torch.full((5,), k)) for k in range(len(CLASSES))], dim=1)
    assert every.shape == (5, len(CLASSES)) and torch.allclose(every, one, atol=1e-5)


def test_the_shipped_bundle_loads_verified_with_its_test_figures(orienter):
    meta = orienter.meta
    assert DEFAULT_ORIENTATION.is_file() and orienter.path == DEFAULT_ORIENTATION
    assert meta.classes == CLASSES and meta.preprocess.upright is False and orienter.crop_config.upright
    report = json.loads((Path(__file__).resolve().parents[2] / "docs" / "orientation-test.json").read_text())
    assert meta.metrics["test"]["accuracy"] == report["test_accuracy"] > 0.9
    assert meta.metrics["test"]["crops"] == report["crops"]["test"]
    assert DEFAULT_ORIENTATION.with_suffix(".safetensors").stat().st_size < 2 << 20  # ~1 MB: fine to ship


def _copy_bundle(tmp_path: Path, change) -> Path:
    meta = json.loads(DEFAULT_ORIENTATION.read_text())
    shutil.copy(DEFAULT_ORIENTATION.with_suffix(".safetensors"), tmp_path / meta["weights_file"])
    change(meta, tmp_path / meta["weights_file"])
    path = tmp_path / "orientation.json"
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("change, says", [
    (lambda m, w: m.update(weights_sha256="0" * 64), "checksum"),
    (lambda m, w: w.write_bytes(w.read_bytes()[:1000]), "checksum"),
    (lambda m, w: m.update(kind="detector"), "not an orientation bundle"),
    (lambda m, w: m.update(width=16), "do not fit"),
    (lambda m, w: m.update(width="24"), "width"),
    (lambda m, w: m.update(input_size=128), "input_size"),
    (lambda m, w: m.update(classes=m["classes"][::-1]), "class list"),
    (lambda m, w: m.pop("weights_sha256"), "weights_sha256"),
])
def test_a_damaged_or_foreign_bundle_is_refused_naming_the_file(tmp_path, change, says):
    path = _copy_bundle(tmp_path, change)
    with pytest.raises(InputError, match=says) as err:
        load_orientation(path)
    assert str(tmp_path) in str(err.value)


def test_no_bundle_means_no_orientation(tmp_path):
    assert find_orienter(False) is None and find_orienter(None) is None
    with pytest.raises(InputError, match="not found"):
        find_orienter(tmp_path / "missing.json")


def _test_case_crops(cells: int = 3) -> tuple[list[list[np.ndarray]], list[list[str]]]:
    """A few whole cells of the network's held-out (test) cases."""
    import cv2

    from training.data import split_groups

    with open(KARYOGRAMS / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    split = split_groups(np.array([r["case"] for r in rows]), 0)
    by_cell: dict[str, list] = {}
    for r in rows:
        if split[r["case"]] == "test":
            by_cell.setdefault(r["cell"], []).append(r)
    chosen = sorted(by_cell)[:cells]
    crops = [[cv2.imread(str(KARYOGRAMS / r["path"]), cv2.IMREAD_GRAYSCALE) for r in by_cell[c]] for c in chosen]
    return crops, [[normalize_label(r["label"]) for r in by_cell[c]] for c in chosen]


@pytest.mark.skipif(not (KARYOGRAMS / "labels.csv").is_file(), reason=f"shared karyogram crops not found at {KARYOGRAMS}")
def test_real_karyogram_crops_are_told_up_from_turned(orienter):
    """Technicians' karyogram crops stand p-arm up: P(up) > 0.5 for most of them as they are, and
    < 0.5 for most of the same crops turned 180 degrees (held-out cases; 96% measured on all)."""
    cells, labels = _test_case_crops()
    up, down, n = 0, 0, 0
    for crops, names in zip(cells, labels):
        images = preprocess_crops(crops, PreprocessConfig(upright=False)).images
        k = np.array([CLASS_INDEX[c] for c in names])
        rows = np.arange(len(k))
        up += int((orienter.p_up(images)[rows, k] > 0.5).sum())
        down += int((orienter.p_up(np.ascontiguousarray(images[:, ::-1, ::-1]))[rows, k] < 0.5).sum())
        n += len(k)
    assert n >= 100
    assert up / n > 0.85 and down / n > 0.85, f"up {up}/{n}, turned {down}/{n}"


def test_classification_stores_the_angle_and_p_up_for_every_class(orienter):
    """The pipeline runs the orientation network on the classifier's own crops; without one the
    records carry no orientation, as before."""
    import cv2

    from chromodesk.pipeline import classify_document

    gray = np.full((200, 300), 215, np.uint8)
    doc = Karyotype("cell.png", "", 300, 200)
    for i, x in enumerate((40, 120, 200)):
        cv2.line(gray, (x, 30), (x + 10 * i, 160), 70, 12)
        doc.add(Box(x - 12, 20, x + 10 * i + 12, 170))

    class Fake:
        model_id, preprocess, has_context = "fake", PreprocessConfig(), False
        orienter = None

        def predict(self, crops):
            return np.full((len(crops.images), 24), 1 / 24)

    classify_document(doc, gray, Fake())
    assert all(r.angle is None and r.p_up is None for r in doc)
    Fake.orienter = orienter
    classify_document(doc, gray, Fake())
    for r in doc:
        assert len(r.p_up) == len(CLASSES) and all(0.0 <= p <= 1.0 for p in r.p_up)
        assert -90.0 <= r.angle <= 90.0
    assert len({r.p_up for r in doc}) == 3  # each crop its own answer


def test_the_classifier_carries_the_shipped_orienter_unless_told_not_to():
    from chromodesk.inference.classifier import Classifier

    assert Classifier(None, device="cpu").orienter is not None
    assert Classifier(None, device="cpu", orientation=False).orienter is None
