"""Masks without torch: the window the mask network sees, its answer back in image pixels,
outlines, and a crossing neighbour kept out of the crop when an outline is given."""

from __future__ import annotations

import cv2
import numpy as np

from chromodesk.core.document import Box
from chromodesk.core.mask_input import MASK_SIZE, box_channel, cut_window, mask_input, mask_window, window_mask, window_target
from chromodesk.core.outline import mask_outline, outline_box, outline_mask
from chromodesk.core.preprocess import PreprocessConfig, enhance_image, isolate, mask_regions, preprocess_cell

SLIDE, STAIN = 210, 60
CFG = PreprocessConfig()


def ellipse(shape, centre, length, width, angle) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, centre, (length // 2, width // 2), angle, 0, 360, 1, -1)
    return mask


def tight(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def crossing_cell():
    """Two dark bars crossing at right angles, as two chromosomes lying on each other."""
    shape = (160, 160)
    a = ellipse(shape, (80, 80), 100, 14, 30)
    b = ellipse(shape, (80, 80), 90, 14, 120)
    gray = np.full(shape, SLIDE, np.uint8)
    gray[(a | b) > 0] = STAIN
    return gray, a, b


def iou(x, y) -> float:
    return float(((x > 0) & (y > 0)).sum() / max(((x > 0) | (y > 0)).sum(), 1))


def test_window_is_square_centred_on_the_box_and_padded_outside_the_image():
    box = Box(2, 10, 22, 50)  # 20 x 40, near the left edge
    w = mask_window(box)
    assert w.width == w.height > box.height
    assert abs((w.xmin + w.xmax) - (box.xmin + box.xmax)) <= 1 and abs((w.ymin + w.ymax) - (box.ymin + box.ymax)) <= 1
    image = np.full((60, 60), 200, np.uint8)
    cut = cut_window(image, w)
    assert cut.shape == (w.height, w.width)
    assert (cut[:, : -w.xmin] == 0).all()  # left of the image: background, not a copy of the edge
    x, window = mask_input(image, box)
    assert x.shape == (2, MASK_SIZE, MASK_SIZE) and window == w
    # the second channel marks the box and nothing else
    inside = x[1] > 0
    assert 0.1 < inside.mean() < 0.6 and inside[MASK_SIZE // 2, MASK_SIZE // 2]


def test_a_probability_map_comes_back_as_the_same_mask_in_image_pixels():
    gray, a, _ = crossing_cell()
    box = tight(a)
    window = mask_window(box)
    target = window_target(a[box.ymin : box.ymax, box.xmin : box.xmax], box, window)
    region = mask_regions([box], CFG, 160, 160)[0]
    back = window_mask(target, window, region)
    truth = a[region.ymin : region.ymax, region.xmin : region.xmax]
    assert iou(back, truth) > 0.9


def test_outline_round_trip_and_its_box():
    _, a, _ = crossing_cell()
    region = Box(0, 0, 160, 160)
    points = mask_outline(a, region)
    assert points is not None and 6 <= len(points) < 200
    assert iou(outline_mask(points, region), a) > 0.95
    assert outline_box(points) == tight(a)
    # an outline is in image pixels: the same mask seen through a shifted region moves with it
    shifted = mask_outline(a[20:, 30:], Box(30, 20, 160, 160))
    assert iou(outline_mask(shifted, region), a) > 0.95
    assert mask_outline(np.zeros((5, 5), np.uint8), Box(0, 0, 5, 5)) is None


def test_an_outline_keeps_the_crossing_partner_out_of_the_crop():
    gray, a, b = crossing_cell()
    box = tight(a)
    enhanced = enhance_image(gray, CFG)
    _, alone = isolate(enhanced, box, CFG)
    region = mask_regions([box], CFG, 160, 160)[0]
    outline = a[region.ymin : region.ymax, region.xmin : region.xmax]
    _, separated = isolate(enhanced, box, CFG, outline)
    partner = b[region.ymin : region.ymax, region.xmin : region.xmax] & (1 - outline)
    assert (alone & partner).sum() > 100  # threshold alone takes in the partner's arms
    assert (separated & partner).sum() < 0.05 * partner.sum()
    assert iou(separated, outline) > 0.85  # and keeps the chromosome itself, crossing included


def test_outlines_keep_the_config_digest_of_older_models():
    assert PreprocessConfig().digest() == "33d76a48dcec"  # the shipped model's crop cache key, unchanged
    assert PreprocessConfig(outlines=True).digest() != PreprocessConfig().digest()


def test_preprocess_cell_asks_the_segment_function_and_reports_the_masks():
    gray, a, b = crossing_cell()
    boxes = [tight(a), tight(b)]
    asked = []

    def segment(enhanced, bxs, regions):
        asked.append((enhanced.shape, list(bxs), list(regions)))
        return [m[r.ymin : r.ymax, r.xmin : r.xmax] for m, r in zip((a, b), regions)]

    plain = preprocess_cell(gray, boxes, CFG)
    # a model trained on threshold crops gets threshold crops; the outlines still come back (for display)
    shown = preprocess_cell(gray, boxes, CFG, segment=segment)
    assert np.array_equal(shown.images, plain.images) and len(shown.masks) == 2
    cell = preprocess_cell(gray, boxes, PreprocessConfig(outlines=True), segment=segment)
    assert len(asked) == 2 and asked[0][1] == boxes and asked[0][2] == mask_regions(boxes, CFG, 160, 160)
    assert plain.masks is None and len(cell.masks) == 2
    # each crop now holds one chromosome: less ink than threshold + largest component gave
    assert all(s["area"] < 0.8 * p["area"] for s, p in zip(cell.raw, plain.raw))
    # the upright turn follows the chromosome's own axis, not the cross's
    angles = sorted(abs(r["angle"]) for r in cell.raw)
    assert abs(angles[0] - 30) < 6 and abs(angles[1] - 60) < 6


def test_the_karyogram_shows_only_the_outlined_chromosome_not_its_crossing_partner():
    from chromodesk.core.document import Karyotype
    from chromodesk.core.export import chromosome_ink, render_annotated

    gray, a, b = crossing_cell()
    doc = Karyotype("cross.png", "0" * 64, 160, 160)
    ra = doc.add(tight(a))
    plain = chromosome_ink(doc, gray)[ra.id]
    region = Box(0, 0, 160, 160)
    doc.set_prediction(ra.id, [1 / 24] * 24, "test", outline=mask_outline(a, region))
    separated = chromosome_ink(doc, gray)[ra.id]
    # without an outline the partner's arms come along (a cross); with it, one straight bar
    assert (plain > 0).sum() > 1.3 * (separated > 0).sum()
    assert abs(int((separated > 0).sum()) - int(a.sum())) < 0.2 * a.sum()
    height, width = separated.shape
    assert height > 4 * width  # upright, one chromosome wide
    # the annotated picture draws the outline (ink off the box's edges), the box only thinly
    canvas = render_annotated(doc, gray)
    inside = canvas[tight(a).ymin + 5 : tight(a).ymax - 5, tight(a).xmin + 5 : tight(a).xmax - 5]
    assert (np.abs(inside.astype(int) - gray[tight(a).ymin + 5 : tight(a).ymax - 5,
                                            tight(a).xmin + 5 : tight(a).xmax - 5, None]).sum(axis=2) > 60).sum() > 50


def test_outlines_survive_save_and_load_and_bad_ones_are_refused(tmp_path):
    import json

    import pytest

    from chromodesk.core.document import Karyotype
    from chromodesk.core.errors import InputError
    from chromodesk.core.session import load_session, save_session

    doc = Karyotype("cross.png", "0" * 64, 160, 160)
    r = doc.add(Box(10, 10, 50, 60))
    doc.set_prediction(r.id, [1 / 24] * 24, "test", outline=((12, 12), (48, 14), (30, 58)))
    path = save_session(doc, tmp_path / "s.chromodesk.json")
    back = load_session(path)
    assert back.get(r.id).outline == ((12, 12), (48, 14), (30, 58))
    # moving the box drops the outline: it was drawn for the old box
    back.set_box(r.id, Box(20, 20, 60, 70))
    assert back.get(r.id).outline is None
    data = json.loads(path.read_text())
    for bad, problem in (([[1, 2], [3, 4]], "3 to"), ([[1, 2], [3, 4], [5, "x"]], "whole pixels"),
                         ([[1, 2], [3, 4], [500, 6]], "outside the image"), ("12,12", "3 to")):
        data["records"][0]["outline"] = bad
        path.write_text(json.dumps(data))
        with pytest.raises(InputError, match=problem) as info:
            load_session(path)
        assert "outline" in str(info.value) and path.name in str(info.value)
    del data["records"][0]["outline"]  # sessions saved before masks existed still open
    path.write_text(json.dumps(data))
    assert load_session(path).get(r.id).outline is None
