"""The learned detector: targets, augmentation, decoding, metrics, a tiny training run, its bundle.

Synthetic metaphases built here: dark banded bars on a light background at random angles,
some crossing, with their VOC boxes.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from chromodesk.core.document import Box, Karyotype
from chromodesk.core.errors import InputError
from chromodesk.core.voc import write_voc
from training.detect_data import (DetectAugment, DetectImage, Sprite, isolated_sprites, load_detect_source, make_targets,
                                  paste_crossing, sample_patch)
from training.detect_metrics import at_threshold, average_precision, best_threshold, match_one_to_one


def _bar(canvas: np.ndarray, centre, length: int, angle: float, width: int = 12) -> list[int]:
    """Draw one dark bar; return its axis-aligned box (0-based, exclusive end)."""
    mask = np.zeros(canvas.shape, np.uint8)
    rect = (centre, (length, width), angle)
    cv2.fillPoly(mask, [cv2.boxPoints(rect).astype(np.int32)], 1)
    canvas[mask > 0] = np.minimum(canvas[mask > 0], 80)
    ys, xs = np.nonzero(mask)
    return [int(xs.min()) - 3, int(ys.min()) - 3, int(xs.max()) + 4, int(ys.max()) + 4]


def synthetic_metaphase(rng: np.random.Generator, size=(320, 320), n: int = 10, crossings: int = 2):
    img = np.full(size, 225, np.uint8)
    boxes = []
    for i in range(n):
        c = (float(rng.uniform(40, size[1] - 40)), float(rng.uniform(40, size[0] - 40)))
        boxes.append(_bar(img, c, int(rng.integers(40, 90)), float(rng.uniform(0, 180))))
    for b in boxes[:crossings]:  # a second bar across the first ones, at right angles
        c = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        boxes.append(_bar(img, c, 60, 45.0 + 90 * (b[2] - b[0] < b[3] - b[1])))
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    h, w = size
    return img, [Box(*b).clipped(w, h) for b in boxes]


@pytest.fixture(scope="module")
def voc_folder(tmp_path_factory):
    """Twelve synthetic cells in four cases, split 2 train / 1 val / 1 test."""
    root = tmp_path_factory.mktemp("synthetic-metaphases")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for case in range(4):
        for cell in range(3):
            name = f"90000{case}{cell + 1}"
            img, boxes = synthetic_metaphase(rng)
            path = root / "images" / f"{name}.png"
            cv2.imwrite(str(path), img)
            doc = Karyotype(str(path), "", img.shape[1], img.shape[0])
            for b in boxes:
                doc.add(b, file_label="1")
            write_voc(doc, root / "annotations" / f"{name}.xml")
    split = {f"{root.name}/90000{c}": part for c, part in enumerate(["train", "train", "val", "test"])}
    (root / "split.json").write_text(json.dumps(split))
    return root


# -- targets and augmentation -----------------------------------------------------------------
def test_targets_put_one_peak_with_size_and_offset_at_each_centre():
    boxes = np.array([[10, 20, 50, 44], [100, 100, 120, 160]], np.float32)
    heat, weight, reg, reg_mask = make_targets(boxes, np.zeros((0, 4)), (256, 256))
    assert heat.shape == (64, 64) and reg_mask.sum() == 2
    iy, ix = 32 // 4, 30 // 4  # centre (30, 32) in cells
    assert heat[iy, ix] == 1.0 and reg_mask[iy, ix] == 1
    assert np.allclose(np.exp(reg[:2, iy, ix]), [40 / 4, 24 / 4])
    assert np.allclose(reg[2:, iy, ix], [30 / 4 - ix, 32 / 4 - iy])
    assert (heat == 1.0).sum() == 2 and weight.min() == 1.0


def test_boxes_cut_by_the_patch_edge_are_neither_hits_nor_misses():
    heat, weight, _, reg_mask = make_targets(np.zeros((0, 4)), np.array([[0, 0, 20, 40]]), (64, 64))
    assert reg_mask.sum() == 0 and heat.max() == 0
    assert weight[:10, :5].max() == 0 and weight[12:, 6:].min() == 1


def test_augmented_patches_keep_every_box_on_its_chromosome():
    rng = np.random.default_rng(1)
    img, boxes = synthetic_metaphase(rng, size=(400, 400), n=14, crossings=0)
    from chromodesk.core.detector_input import detector_input

    x = detector_input(img, 0.5)
    im = DetectImage("1", "0", x.astype(np.float16), np.array([b.as_list() for b in boxes], np.float32) * 0.5, 0.5)
    for k in range(12):
        patch, kept, cut = sample_patch(im, [], DetectAugment(patch=128, paste_prob=0.0), np.random.default_rng(k))
        assert patch.shape == (128, 128)
        for x0, y0, x1, y1 in kept:  # the bright (chromosome) pixels fill the box's middle
            inner = patch[int(y0) + 2 : int(np.ceil(y1)) - 2, int(x0) + 2 : int(np.ceil(x1)) - 2]
            assert inner.max() > 0.5, (k, (x0, y0, x1, y1))


def test_a_pasted_chromosome_gets_a_box_around_its_pixels():
    rng = np.random.default_rng(2)
    x = np.zeros((128, 128), np.float32)
    mask = np.zeros((30, 10), bool)
    mask[2:28, 2:8] = True
    sprite = Sprite(np.where(mask, 1.0, 0.0).astype(np.float32), mask, margin=1.5)
    boxes: list[list[float]] = []
    for _ in range(20):
        if paste_crossing(x, boxes, sprite, rng):
            break
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    ys, xs = np.nonzero(x > 0.5)
    assert x0 <= xs.min() and y0 <= ys.min() and x1 >= xs.max() + 1 and y1 >= ys.max() + 1
    assert (x1 - x0) * (y1 - y0) < 2.5 * 30 * 30  # tight: the rotated bar plus the margin, not the canvas


def test_isolated_sprites_skip_chromosomes_with_a_neighbour():
    x = np.zeros((100, 100), np.float32)
    x[10:30, 10:16] = 1.0
    x[60:80, 60:66] = 1.0
    x[60:80, 70:76] = 1.0  # two side by side: neither is isolated
    boxes = np.array([[8, 8, 18, 32], [58, 58, 68, 82], [68, 58, 78, 82]], np.float32)
    sprites = isolated_sprites(DetectImage("1", "0", x.astype(np.float16), boxes, 1.0))
    assert len(sprites) == 1 and sprites[0].mask.sum() == 20 * 6


# -- decoding and metrics -----------------------------------------------------------------------
def test_two_crossing_chromosomes_are_two_detections_without_suppression():
    from chromodesk.inference.detector_net import decode

    heat = torch.full((1, 1, 32, 32), -9.0)
    heat[0, 0, 10, 10] = 3.0  # one centre ...
    heat[0, 0, 12, 11] = 2.0  # ... and another two cells away, as crossing chromosomes have
    size = torch.zeros((1, 2, 32, 32))
    size[0, :, 10, 10] = torch.tensor([np.log(8.0), np.log(2.0)])
    size[0, :, 12, 11] = torch.tensor([np.log(2.0), np.log(8.0)])
    offset = torch.full((1, 2, 32, 32), 0.5)
    found = decode(heat, size, offset, threshold=0.3)[0]
    assert len(found) == 2
    assert np.allclose(found[0, :4], [10.5 - 4, 10.5 - 1, 10.5 + 4, 10.5 + 1], atol=1e-4)
    assert found[0, 4] > found[1, 4]


def test_average_precision_and_matching():
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    perfect = [np.array([[0, 0, 10, 10, 0.9], [20, 20, 30, 30, 0.8]])]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    one_wrong = [np.array([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.95]])]
    assert average_precision(one_wrong, truth) == pytest.approx(0.25)  # recall 0.5, first hit at precision 0.5
    # one box over both chromosomes matches neither; one-to-one: a duplicate is a false positive
    assert match_one_to_one(np.array([[0, 0, 30, 30]]), truth[0]) == []
    dup = [np.array([[0, 0, 10, 10, 0.9], [0, 0, 10, 11, 0.6], [20, 20, 30, 30, 0.8]])]
    r = at_threshold(dup, truth, 0.5)
    assert r["recall"] == 1.0 and r["precision"] == pytest.approx(2 / 3) and r["median_count_error"] == 1
    assert 0.6 < best_threshold(dup, truth)["threshold"] <= 0.8  # the duplicate scores lowest: cut it off


# -- training, bundle, inference ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(voc_folder, tmp_path_factory, monkeypatch_module):
    from training.detect_fit import DetectTrainConfig, fit_detector

    monkeypatch_module.setenv("CHROMODESK_CACHE", str(tmp_path_factory.mktemp("cache")))
    run = tmp_path_factory.mktemp("detect-run")
    cfg = DetectTrainConfig(batch_size=4, samples_per_epoch=8, epochs=2, lr=1e-3,
                            augment=DetectAugment(patch=128, paste_prob=0.5))
    split = json.loads((voc_folder / "split.json").read_text())
    metrics = fit_detector([str(voc_folder)], cfg, run, split, quiet=True)
    return run, metrics, cfg, split


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_a_training_run_writes_a_verified_bundle_reports_and_can_resume(trained, voc_folder):
    from training.detect_fit import fit_detector

    run, metrics, cfg, split = trained
    for name in ("detector.json", "detector.safetensors", "checkpoint.pt", "history.json", "curves.png", "split.json"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "detector.json").read_text())
    assert meta["kind"] == "detector" and meta["training"]["train_images"] == 6 and meta["training"]["val_images"] == 3
    assert len(metrics["history"]) == 2 and 0 <= metrics["val_ap50"] <= 1
    cfg.epochs = 3  # one more epoch from the checkpoint, not three from scratch
    again = fit_detector([str(voc_folder)], cfg, run, split, resume=True, quiet=True)
    assert [h["epoch"] for h in again["history"]] == [1, 2, 3]


def test_the_detector_finds_boxes_in_image_pixels(trained, voc_folder):
    from chromodesk.core.imaging import load_gray
    from chromodesk.inference.detector import Detector

    run, *_ = trained
    det = Detector(run / "detector.json", device="cpu")
    gray = load_gray(voc_folder / "images" / "9000031.png").gray
    found = det.detect_array(gray, threshold=0.01)
    assert found.shape[1] == 5 and len(found) > 0
    assert found[:, [0, 2]].min() >= 0 and found[:, [0, 2]].max() <= gray.shape[1]
    boxes = det.detect(gray, threshold=0.01)
    assert all(isinstance(b, Box) and not b.is_empty() for b, _ in boxes)


def test_boxes_under_the_threshold_come_doubted_and_open_out_of_the_cell(trained, voc_folder, tmp_path):
    """A bundle with a doubt floor also gives the boxes it scored between the floor and its
    threshold, each with the nats it fell short (twice, at weight 2); they open as detected boxes
    held out of the cell. A floor above the threshold is refused, naming the file."""
    import shutil

    from chromodesk.core.imaging import load_gray
    from chromodesk.core.karyotype import doubt_nats
    from chromodesk.inference.detector import Detector, load_detector
    from chromodesk.pipeline import open_cell

    run, *_ = trained
    for name in ("detector.json", "detector.safetensors"):
        shutil.copy(run / name, tmp_path / name)
    image = voc_folder / "images" / "9000031.png"
    gray = load_gray(image).gray
    scores = sorted(s for _, s in Detector(tmp_path / "detector.json", device="cpu").detect(gray, threshold=0.01))
    assert len(scores) >= 3
    meta = json.loads((tmp_path / "detector.json").read_text())
    meta.update(threshold=scores[-1], doubt_floor=scores[0], doubt_weight=2.0)  # the top box sure, the rest doubted
    (tmp_path / "detector.json").write_text(json.dumps(meta))
    det = Detector(tmp_path / "detector.json", device="cpu")
    found = det.detect_doubted(gray)
    assert len(found) == len(scores)
    assert sorted(d for _, d in found)[0] == 0.0
    assert max(d for _, d in found) == pytest.approx(2.0 * doubt_nats(scores[0], scores[-1]), rel=1e-4)
    doc, _, source = open_cell(image, detector=det, ignore_annotations=True)
    assert source == "detected" and sorted(r.doubt for r in doc) == sorted(d for _, d in found)
    assert any("unsure of" in w for w in doc.warnings)
    meta["doubt_floor"] = scores[-1] + 0.01
    (tmp_path / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="doubt_floor") as err:
        load_detector(tmp_path / "detector.json")
    assert "detector.json" in str(err.value)


def test_a_damaged_detector_bundle_is_refused_naming_the_file(trained, tmp_path):
    import shutil

    from chromodesk.inference.detector import load_detector

    run, *_ = trained
    for name in ("detector.json", "detector.safetensors"):
        shutil.copy(run / name, tmp_path / name)
    weights = tmp_path / "detector.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum mismatch") as err:
        load_detector(tmp_path / "detector.json")
    assert "detector.safetensors" in str(err.value)
    meta = json.loads((tmp_path / "detector.json").read_text())
    meta["width"] = "huge"
    (tmp_path / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unknown detector width"):
        load_detector(tmp_path / "detector.json")


def test_evaluate_detect_reports_every_figure(trained, voc_folder):
    from training.detect_eval import evaluate_detection

    run, *_ = trained
    result = evaluate_detection(str(run / "detector.json"), [str(voc_folder)], split="test",
                                split_file=str(voc_folder / "split.json"), end_to_end=False, quiet=True)
    assert result["n_images"] == 3
    for key in ("ap50", "ap50_95", "recall50", "precision50", "median_count_error", "mean_count_error",
                "seconds_per_image", "n_images"):
        assert key in result and key in result["methods"]["classical"]
    assert result["methods"]["classical"]["recall50"] > 0.3  # the bars are easy for thresholding


def test_the_cache_gives_back_what_was_loaded(voc_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CHROMODESK_CACHE", str(tmp_path))
    first = load_detect_source(voc_folder, 0.5)
    second = load_detect_source(voc_folder, 0.5)  # from the cache file
    assert [im.name for im in first.images] == [im.name for im in second.images]
    assert np.array_equal(first.images[3].boxes, second.images[3].boxes)
    assert np.array_equal(first.images[3].x, second.images[3].x)
    assert len(list(tmp_path.glob("detect-*.npz"))) == 1


class _CentroidNet(torch.nn.Module):
    """An exactly flip-equivariant stand-in: heat = the picture pooled to stride 4, log size 0, and
    the offset of the picture's brightness centroid within its stride-4 cell, in every cell."""

    def forward(self, t):
        heat = torch.nn.functional.avg_pool2d(t, 4) * 8 - 4
        n, _, h, w = heat.shape
        ys, xs = torch.meshgrid(torch.arange(t.shape[2]), torch.arange(t.shape[3]), indexing="ij")
        m = t[0, 0].sum()
        cx, cy = (t[0, 0] * (xs + 0.5)).sum() / m / 4, (t[0, 0] * (ys + 0.5)).sum() / m / 4
        offset = torch.stack([torch.full((h, w), float(cx % 1)), torch.full((h, w), float(cy % 1))])[None]
        return heat, torch.zeros((n, 2, h, w)), offset


def test_flip_averaging_maps_offsets_back_to_the_picture():
    from chromodesk.inference.detector import flip_averaged

    t = torch.zeros((1, 1, 64, 64))
    t[..., 21:30, 9:14] = 1.0  # off-centre, so each flip puts it in another cell at another offset
    heat, size, offset = flip_averaged(_CentroidNet(), t)
    h1, _, o1 = _CentroidNet()(t)
    assert torch.allclose(offset, o1, atol=1e-5)  # a wrong mapping would average 0.25 with 0.75
    assert torch.allclose(torch.sigmoid(heat), torch.sigmoid(h1), atol=1e-5)
    assert torch.allclose(size, torch.zeros_like(size))
    # with the transpose's four flips too (quarter turns): x and y come back in their own channels
    heat8, _, offset8 = flip_averaged(_CentroidNet(), t, transposes=True)
    assert torch.allclose(offset8, o1, atol=1e-5) and torch.allclose(torch.sigmoid(heat8), torch.sigmoid(h1), atol=1e-5)


# -- twins: crossing chromosomes that share a centre ----------------------------------------------
def test_a_chromosome_centred_on_a_larger_ones_peak_is_its_twin_not_a_second_peak():
    long = [40, 40, 80, 120]  # centre (60, 80): cell (15, 20)
    cross = [44, 70, 78, 92]  # centre (61, 81): the same cell, a crossing at the middle
    apart = [150, 150, 170, 200]
    heat, weight, reg, reg_mask, twins = make_targets(np.array([cross, long, apart], np.float32), np.zeros((0, 4)),
                                                      (256, 256), twin=True)
    assert reg_mask.sum() == 2 and (heat == 1.0).sum() == 2  # the long one and the one apart
    assert twins[0].sum() == 1 and twins[0, 20, 15] == 1  # the cross is the long one's twin
    assert np.allclose(np.exp(twins[1:3, 20, 15]), [34 / 4, 22 / 4])
    assert np.allclose(twins[3:, 20, 15], [61 / 4 - 15, 81 / 4 - 20])
    assert np.allclose(np.exp(reg[:2, 20, 15]), [40 / 4, 80 / 4])  # the peak keeps the larger box
    plain = make_targets(np.array([cross, long, apart], np.float32), np.zeros((0, 4)), (256, 256))
    assert len(plain) == 4 and plain[3].sum() == 2  # without twins the pair is one cell: one of them is lost


def test_a_peak_with_a_twin_decodes_to_two_boxes():
    from chromodesk.inference.detector_net import decode

    heat = torch.full((1, 1, 32, 32), -9.0)
    heat[0, 0, 10, 10] = 3.0
    size = torch.zeros((1, 2, 32, 32))
    size[0, :, 10, 10] = torch.tensor([np.log(8.0), np.log(2.0)])
    offset = torch.full((1, 2, 32, 32), 0.5)
    twin = torch.full((1, 5, 32, 32), -9.0)
    twin[0, :, 10, 10] = torch.tensor([2.0, np.log(2.0), np.log(8.0), 0.25, 0.75])
    found = decode(heat, size, offset, 0.3, twin=twin)[0]
    assert len(found) == 2
    assert np.allclose(found[1, :4], [10.25 - 1, 10.75 - 4, 10.25 + 1, 10.75 + 4], atol=1e-4)
    p = 1 / (1 + np.exp(-3.0))
    assert np.isclose(found[1, 4], p / (1 + np.exp(-2.0)), atol=1e-5)
    twin[0, 0, 10, 10] = -3.0  # no twin there: one box
    assert len(decode(heat, size, offset, 0.3, twin=twin)[0]) == 1


def test_a_twin_detector_starts_from_a_plain_one_and_round_trips(trained, voc_folder, tmp_path):
    from chromodesk.core.imaging import load_gray
    from chromodesk.inference.detector import Detector, flip_averaged
    from training.detect_fit import DetectTrainConfig, fit_detector

    run, *_ = trained
    cfg = DetectTrainConfig(batch_size=4, samples_per_epoch=8, epochs=1, lr=1e-3, twin=True,
                            init=str(run / "detector.json"),
                            augment=DetectAugment(patch=128, paste_prob=1.0, centre_paste=1.0))
    split = json.loads((voc_folder / "split.json").read_text())
    metrics = fit_detector([str(voc_folder)], cfg, tmp_path / "twin", split, quiet=True)
    assert "train_twin" in metrics["history"][0]
    det = Detector(tmp_path / "twin" / "detector.json", device="cpu")
    assert det.meta.twin and det.model.twin is not None
    maps = flip_averaged(det.model, torch.zeros((1, 1, 64, 64)))
    assert len(maps) == 4 and maps[3].shape == (1, 5, 16, 16)
    img = load_gray(next((voc_folder / "images").iterdir()))
    assert det.detect_array(img.gray, threshold=0.01).shape[1] == 5
