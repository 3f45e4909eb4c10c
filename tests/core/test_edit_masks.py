"""Knife split and join on synthetic masks: the geometry behind Cell ▸ Split / Join."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from chromodesk.core.document import Box
from chromodesk.core.edit_masks import (
    EditRefused, cut_mask, join_masks, join_outline, line_crosses_box, record_mask, split_pieces, union_box,
)
from chromodesk.core.outline import outline_box, outline_mask
from chromodesk.core.preprocess import PreprocessConfig, enhance_image

REGION = Box(10, 20, 110, 80)  # where the masks lie in the image


def touching_bars() -> np.ndarray:
    """Two horizontal bars end to end (x 5..44 and 45..89 of the region, y 20..31): one box for
    two touching chromosomes."""
    mask = np.zeros((REGION.height, REGION.width), np.uint8)
    mask[20:32, 5:45] = 1
    mask[20:32, 45:90] = 1
    return mask


def test_a_line_across_two_touching_bars_gives_the_two_bars():
    # a vertical cut at image x = 10 + 45 = 55, drawn well past the bars
    pieces = split_pieces(touching_bars(), REGION, (55.0, 30.0), (55.0, 60.0))
    left, right = sorted((b for b, _ in pieces), key=lambda b: b.xmin)
    # the bars are x 15..54 and 55..99, y 40..51 in the image; the knife takes ~1 px either side
    assert (left.xmin, left.ymin, left.ymax) == (15, 40, 52) and 53 <= left.xmax <= 55
    assert (right.xmax, right.ymin, right.ymax) == (100, 40, 52) and 55 <= right.xmin <= 57
    for box, outline in pieces:
        assert outline is not None and len(outline) >= 3
        assert outline_box(outline) == box  # the outline goes round the piece and nothing else


def test_a_slanted_cut_splits_too_and_pieces_do_not_overlap():
    a, b = cut_mask(touching_bars(), REGION, (50.0, 35.0), (60.0, 58.0))
    assert not (a & b).any()
    assert a.sum() > 0.3 * touching_bars().sum() and b.sum() > 0.3 * touching_bars().sum()


@pytest.mark.parametrize("p0, p1, why", [
    ((55.0, 60.0), (55.0, 75.0), "in two"),  # below the bars: misses them
    ((20.0, 20.0), (90.0, 35.0), "in two"),  # above them
    ((97.0, 35.0), (97.0, 60.0), "nicks"),  # cuts only 3 px off the right end
])
def test_a_line_that_misses_or_nicks_the_end_is_refused(p0, p1, why):
    with pytest.raises(EditRefused, match=why):
        cut_mask(touching_bars(), REGION, p0, p1)


def test_line_crosses_box():
    box = Box(10, 10, 20, 20)
    assert line_crosses_box((0, 15), (30, 15), box)
    assert line_crosses_box((12, 12), (13, 13), box)  # inside
    assert not line_crosses_box((0, 0), (30, 5), box)
    assert not line_crosses_box((0, 30), (30, 0), Box(0, 0, 5, 5))


def test_join_two_pieces_of_a_broken_chromosome_gives_one_outline_over_both():
    # two bars with a 4-pixel gap between them (broken at the centromere)
    top = np.zeros((20, 14), np.uint8)
    top[2:18, 2:12] = 1
    bottom = np.zeros((24, 14), np.uint8)
    bottom[2:22, 2:12] = 1
    top_region, bottom_region = Box(50, 50, 64, 70), Box(50, 72, 64, 96)
    box = union_box([Box(52, 52, 62, 68), Box(52, 74, 62, 94)])
    assert box == Box(52, 52, 62, 94)
    joined = join_masks([(top, top_region), (bottom, bottom_region)], box)
    n, _ = cv2.connectedComponents(joined)
    assert n == 2  # one piece: the gap is bridged
    assert joined.sum() >= top.sum() + bottom.sum()
    outline = join_outline([(top, top_region), (bottom, bottom_region)], box)
    assert outline_box(outline) == box
    filled = outline_mask(outline, box)
    assert filled[:16, :].sum() > 100 and filled[-18:, :].sum() > 100  # both ends inside the one outline


def test_record_mask_from_outline_and_from_threshold():
    cfg = PreprocessConfig(nlm_h=0.0)
    gray = np.full((100, 100), 210, np.uint8)
    gray[30:40, 20:80] = 60  # a dark bar on a light slide
    enhanced = enhance_image(gray, cfg)
    box = Box(18, 28, 82, 42)
    mask, region = record_mask(enhanced, box, None, cfg)
    assert region == Box(18 - cfg.margin, 28 - cfg.margin, 82 + cfg.margin, 42 + cfg.margin)
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() + region.xmin - 20) <= 1 and abs(xs.max() + region.xmin - 79) <= 1
    assert abs(ys.min() + region.ymin - 30) <= 1 and abs(ys.max() + region.ymin - 39) <= 1
    outline = ((20, 30), (49, 30), (49, 39), (20, 39))
    mask, region = record_mask(enhanced, box, outline, cfg)
    assert mask.sum() == 30 * 10


def test_a_hand_made_outline_survives_classification_and_saving_but_not_a_box_change(tmp_path):
    from chromodesk.core.document import Karyotype
    from chromodesk.core.labels import CLASSES
    from chromodesk.core.session import load_session, save_session

    doc = Karyotype("cell.png", "0" * 64, 200, 200)
    outline = ((20, 30), (49, 30), (49, 39), (20, 39))
    r = doc.add(Box(20, 30, 50, 40), origin="drawn", outline=outline, outline_by_hand=True)
    probs = [1.0 / len(CLASSES)] * len(CLASSES)
    doc.set_prediction(r.id, probs, "m", outline=((0, 0), (5, 0), (5, 5)))
    assert r.outline == outline  # the classifier's own outline does not replace the technician's
    doc.set_prediction(r.id, probs, "m", outline=None)
    assert r.outline == outline
    save_session(doc, tmp_path / "s.json")
    again = load_session(tmp_path / "s.json").get(r.id)
    assert again.outline == outline and again.outline_by_hand
    doc.set_box(r.id, Box(20, 30, 60, 40))
    assert r.outline is None and not r.outline_by_hand
    doc.set_prediction(r.id, probs, "m", outline=((0, 0), (5, 0), (5, 5)))
    assert r.outline == ((0, 0), (5, 0), (5, 5))


def test_classification_cuts_the_crop_by_the_hand_made_outline():
    from chromodesk.core.preprocess import preprocess_cell
    from chromodesk.pipeline import hand_masks

    cfg = PreprocessConfig(nlm_h=0.0)  # a model trained on threshold crops: the technician's cut still counts
    gray = np.full((100, 100), 210, np.uint8)
    gray[30:40, 20:80] = 60  # two chromosomes touching end to end: one dark bar
    box = Box(20, 30, 80, 40)
    left = ((20, 30), (49, 30), (49, 39), (20, 39))
    plain = preprocess_cell(gray, [box, box], cfg)
    cut = preprocess_cell(gray, [box, box], cfg, hand=hand_masks([left, None], [box, box], cfg, gray.shape))
    assert cut.masks[0].sum() == 300 and cut.masks[1] is None
    assert cut.raw[1] == plain.raw[1]  # the other box as before
    assert cut.raw[0]["area"] < 0.7 * plain.raw[0]["area"]  # only the left one is in its crop
