"""Straightening a bent chromosome: a banded arc comes out as a straight vertical bar with its
bands in order; straight chromosomes and crosses are left alone."""

from __future__ import annotations

import math

import cv2
import numpy as np

from chromodesk.core.straighten import straighten


def banded_arc(radius: int = 40, sweep: float = 150.0, width: int = 12):
    """A C-shaped chromosome: an arc of ``sweep`` degrees, dark bands every 10 degrees."""
    size = 2 * radius + 4 * width
    mask = np.zeros((size, size), np.uint8)
    ink = np.zeros((size, size), np.uint8)
    c = size // 2
    for k, a in enumerate(np.arange(-sweep / 2, sweep / 2, 1.0)):
        x, y = c + radius * math.cos(math.radians(a)), c + radius * math.sin(math.radians(a))
        cv2.circle(mask, (int(round(x)), int(round(y))), width // 2, 1, -1)
        value = 200 if int((a + sweep / 2) // 10) % 2 else 90
        value = 40 if a > sweep / 2 - 25 else value  # one end darker: which end is which can be told
        cv2.circle(ink, (int(round(x)), int(round(y))), width // 2, value, -1)
    return ink * mask, mask, math.radians(sweep) * radius + width


def test_a_bent_chromosome_comes_out_straight_and_vertical_with_its_bands_in_order():
    ink, mask, length = banded_arc()
    out = straighten(ink, mask)
    assert out is not None
    s_ink, s_mask = out
    ys, xs = np.nonzero(s_mask)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert abs(height - length) < 0.12 * length  # its length along the bend, not the chord
    assert width < 20  # about its own width: straight, not a C
    # bands: going down the middle column, dark and light alternate about every 10 degrees of arc
    col = s_ink[ys.min() : ys.max() + 1, (xs.min() + xs.max()) // 2].astype(float)
    changes = np.count_nonzero(np.diff((col > 145).astype(int)))
    assert 10 <= changes <= 18  # 15 bands -> 14 edges, give or take the tips


def test_top_hint_decides_which_end_goes_up():
    ink, mask, _ = banded_arc(sweep=140)
    dark_end = np.argwhere((ink > 0) & (ink < 60)).mean(axis=0)[::-1]  # (x, y) of the darker end
    for top, dark_on_top in ((dark_end, True), (np.array(ink.shape[::-1]) - dark_end, False)):
        s_ink, s_mask = straighten(ink, mask, top=tuple(top))
        rows = np.nonzero(s_mask.any(axis=1))[0]
        head, tail = s_ink[rows[:15]], s_ink[rows[-15:]]
        head_dark = head[head > 0].mean() < tail[tail > 0].mean()
        assert head_dark == dark_on_top


def test_straight_chromosomes_and_crosses_are_left_to_the_plain_turn():
    bar = np.zeros((80, 30), np.uint8)
    cv2.rectangle(bar, (10, 5), (20, 75), 1, -1)
    assert straighten(bar * 120, bar) is None
    cross = bar.copy()
    cross = np.zeros((80, 80), np.uint8)
    cv2.rectangle(cross, (35, 5), (45, 75), 1, -1)
    cv2.rectangle(cross, (5, 35), (75, 45), 1, -1)
    assert straighten(cross * 120, cross) is None
    assert straighten(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)) is None


def test_a_straightened_crop_is_the_crop_made_straight():
    """``PreprocessConfig.straighten``: the crop's bent chromosome stands straight in the same
    square, a straight one is untouched, and the crop is exactly ``straighten_crop`` of the crop
    made without it (what lets training reuse its cached crops)."""
    from chromodesk.core.document import Box
    from chromodesk.core.preprocess import PreprocessConfig, preprocess_cell, straighten_crop

    ink, mask, _ = banded_arc(radius=60, sweep=150, width=16)
    page = np.full((260, 260), 235, np.uint8)  # a G-band page: dark chromosome on light ground
    y0, x0 = 30, 20
    page[y0 : y0 + ink.shape[0], x0 : x0 + ink.shape[1]][mask > 0] = np.where(ink[mask > 0] > 100, 70, 120)
    ys, xs = np.nonzero(mask)
    box = Box(x0 + xs.min() - 2, y0 + ys.min() - 2, x0 + xs.max() + 3, y0 + ys.max() + 3)
    plain = preprocess_cell(page, [box], PreprocessConfig()).images[0]
    straight = preprocess_cell(page, [box], PreprocessConfig(straighten=True)).images[0]
    assert straight.shape == plain.shape and np.array_equal(straight, straighten_crop(plain))

    def widest_row(crop):
        return int((crop > 0).sum(axis=1).max())

    assert widest_row(straight) < 0.6 * widest_row(plain)  # the C became a bar
    bar = np.zeros((64, 64), np.uint8)
    bar[2:62, 26:38] = 150
    assert np.array_equal(straighten_crop(bar), bar)
    assert PreprocessConfig(straighten=True).digest() != PreprocessConfig().digest()
