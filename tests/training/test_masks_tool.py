"""``chromodesk-train masks`` / ``evaluate-masks`` end to end on a tiny polygon set built here:
bright bars on black (Q-band-like), some crossing, one polygon each."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from chromodesk.core.errors import InputError
from chromodesk.inference.segmenter import Segmenter, find_segmenter, read_segmenter_meta
from training.cli import main as train_main


def _polygon_folder(root, cells: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "polygons").mkdir()
    for c in range(cells):
        gray = np.full((160, 200), 15, np.uint8)
        objects = []
        for k in range(5):
            mask = np.zeros(gray.shape, np.uint8)
            centre = (int(rng.integers(40, 160)), int(rng.integers(40, 120)))
            cv2.ellipse(mask, centre, (int(rng.integers(15, 30)), 5), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            gray[mask > 0] = np.maximum(gray[mask > 0], 170)
            contour = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0][0].reshape(-1, 2)
            objects.append({"label": "chr", "points": contour.tolist()})
        name = f"metaphase_{c:03d}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), gray)
        (root / "polygons" / f"{name}.json").write_text(json.dumps(
            {"image": f"{name}.png", "cell": str(c), "width": 200, "height": 160, "objects": objects}))
    return root


@pytest.fixture(scope="module")
def polygons(tmp_path_factory):
    return _polygon_folder(tmp_path_factory.mktemp("polygons"))


def test_mask_tool_trains_resumes_and_reports_against_the_threshold_baseline(polygons, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["masks", "--polygons", str(polygons), "--out", str(run), "--epochs", "2", "--samples-per-epoch", "64",
            "--batch-size", "16", "--quiet"]
    assert train_main(args) == 0
    bundle = run / "segmenter.json"
    meta = read_segmenter_meta(bundle)
    assert meta.training["epochs_run"] == 2 and 0 < meta.threshold < 1
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # --resume with more epochs continues from the checkpoint instead of starting again
    assert train_main(args[:5] + ["--epochs", "3"] + args[7:] + ["--resume"]) == 0
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]

    report = tmp_path / "masks.json"
    assert train_main(["evaluate-masks", "--model", str(bundle), "--polygons", str(polygons), "--json", str(report),
                       "--quiet"]) == 0
    result = json.loads(report.read_text())
    pol = result["polygon_set"]
    assert pol["cells"] == 2  # the test cells only
    for who in ("network", "threshold_largest_component"):
        assert pol[who]["n_isolated"] + pol[who]["n_touching_or_crossing"] > 0
        assert 0.0 <= pol[who]["all"] <= 1.0
    assert "touching/crossing" in capsys.readouterr().out


def test_segmenter_bundles_are_checked_before_use(polygons, tmp_path):
    run = tmp_path / "run"
    assert train_main(["masks", "--polygons", str(polygons), "--out", str(run), "--epochs", "1",
                       "--samples-per-epoch", "16", "--batch-size", "16", "--quiet"]) == 0
    seg = Segmenter(run / "segmenter.json", device="cpu")
    gray = cv2.imread(str(polygons / "images" / "metaphase_000.png"), cv2.IMREAD_GRAYSCALE)
    from chromodesk.core.document import Box

    masks = seg.masks(gray, [Box(40, 40, 80, 60)], [Box(36, 36, 84, 64)])
    assert masks[0].shape == (28, 48) and masks[0].dtype == np.uint8
    assert find_segmenter(False) is None
    meta = json.loads((run / "segmenter.json").read_text())
    (run / "segmenter.safetensors").write_bytes((run / "segmenter.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match="checksum"):
        Segmenter(run / "segmenter.json", device="cpu")
    meta["kind"] = "detector"
    (run / "segmenter.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not a mask"):
        Segmenter(run / "segmenter.json", device="cpu")
