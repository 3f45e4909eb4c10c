"""Splitting and joining chromosomes by hand: the geometry, without Qt.

A technician cuts two touching chromosomes that got one box apart with a straight "knife" line,
or joins the two boxes a chromosome broken at its centromere got into one. Both work on the
chromosome's mask: its outline when it has one, else the threshold + largest component inside
its box that the classifier's crop uses (``preprocess.isolate``). Results are boxes (image pixels,
``xmax``/``ymax`` exclusive) and outlines (``outline.mask_outline``).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .document import Box
from .outline import Outline, mask_outline, outline_mask
from .preprocess import PreprocessConfig, isolate, mask_regions

MIN_PIECE = 0.10  # each piece of a cut keeps at least this share of the chromosome's pixels
KNIFE_REACH = 1  # pixels: the line and this many pixels either side are taken out of the mask

Point = tuple[float, float]


class EditRefused(ValueError):
    """The edit would not make sense; the message says why, in the technician's words."""


def record_mask(enhanced: np.ndarray, box: Box, outline: Sequence[Sequence[int]] | None,
                cfg: PreprocessConfig) -> tuple[np.ndarray, Box]:
    """A chromosome's 0/1 mask and the region it lies over (the box grown by ``cfg.margin``):
    inside its outline when it has one, else threshold + largest component over the box.
    ``enhanced``: ``preprocess.enhance_image`` of the whole image."""
    height, width = enhanced.shape[:2]
    region = mask_regions([box], cfg, width, height)[0]
    if outline:
        return outline_mask(outline, region), region
    _, mask = isolate(enhanced, box, cfg)
    return (mask > 0).astype(np.uint8), region


def mask_box(mask: np.ndarray, region: Box) -> Box:
    """The tight box (image pixels) of a mask lying over ``region``."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise EditRefused("empty mask")
    return Box(int(xs.min()) + region.xmin, int(ys.min()) + region.ymin,
               int(xs.max()) + 1 + region.xmin, int(ys.max()) + 1 + region.ymin)


def line_crosses_box(p0: Point, p1: Point, box: Box) -> bool:
    """Whether the segment p0-p1 (image coordinates) passes through the box."""
    if box.is_empty():
        return False
    (x0, y0), (x1, y1) = p0, p1
    # Liang-Barsky clipping against the box [xmin, xmax] x [ymin, ymax]
    t0, t1 = 0.0, 1.0
    dx, dy = x1 - x0, y1 - y0
    for p, q in ((-dx, x0 - box.xmin), (dx, box.xmax - x0), (-dy, y0 - box.ymin), (dy, box.ymax - y0)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def cut_mask(mask: np.ndarray, region: Box, p0: Point, p1: Point, *, min_piece: float = MIN_PIECE,
             reach: int = KNIFE_REACH) -> tuple[np.ndarray, np.ndarray]:
    """Cut a mask (over ``region``) with the straight line p0-p1 (image coordinates): the pixels
    within about a pixel of the line go, and the two largest pieces left are returned (0/1 over
    ``region``, the larger first). Raises ``EditRefused`` when the line does not cut the mask
    into two pieces of at least ``min_piece`` of its pixels each."""
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    total = int(mask.sum())
    if total == 0:
        raise EditRefused("the box holds no chromosome to cut")
    knife = np.zeros_like(mask)
    shift = 4  # sub-pixel end points: cv2 takes fixed point with 4 fractional bits
    a = (int(round((p0[0] - region.xmin) * 16)), int(round((p0[1] - region.ymin) * 16)))
    b = (int(round((p1[0] - region.xmin) * 16)), int(round((p1[1] - region.ymin) * 16)))
    cv2.line(knife, a, b, 1, 1, cv2.LINE_8, shift)
    if reach > 0:  # a cross, not a square: 2 * reach + 1 pixels wide across the line, and no 8-connected leak
        knife = cv2.dilate(knife, cv2.getStructuringElement(cv2.MORPH_CROSS, (2 * reach + 1, 2 * reach + 1)))
    left = mask & (1 - knife)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(left, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA] if n > 1 else np.zeros(0, int)
    order = np.argsort(-areas, kind="stable")
    if len(order) < 2:
        raise EditRefused("the line does not cut the chromosome in two: draw it right across it")
    big, second = (int(i) + 1 for i in order[:2])
    smaller = int(areas[order[1]])
    if smaller < min_piece * total:
        raise EditRefused(f"the line only nicks the chromosome (one piece would keep {100 * smaller / total:.0f}% "
                          f"of it, at least {100 * min_piece:.0f}% are needed): draw it right across it")
    return (labels == big).astype(np.uint8), (labels == second).astype(np.uint8)


def split_pieces(mask: np.ndarray, region: Box, p0: Point, p1: Point, **kwargs) -> list[tuple[Box, Outline | None]]:
    """The two chromosomes a knife line cuts a mask into: (tight box, outline) each, in image
    pixels, ordered top to bottom then left to right. Raises ``EditRefused`` (see ``cut_mask``)."""
    pieces = [(mask_box(piece, region), mask_outline(piece, region)) for piece in cut_mask(mask, region, p0, p1, **kwargs)]
    return sorted(pieces, key=lambda piece: (piece[0].ymin, piece[0].xmin))


def union_box(boxes: Sequence[Box]) -> Box:
    return Box(min(b.xmin for b in boxes), min(b.ymin for b in boxes), max(b.xmax for b in boxes),
               max(b.ymax for b in boxes))


def join_masks(masks: Sequence[tuple[np.ndarray, Box]], box: Box) -> np.ndarray:
    """The masks (each over its region) ORed over ``box``; pieces that do not touch (a chromosome
    broken at its centromere) are bridged where they come closest, as wide as the narrower one."""
    out = np.zeros((box.height, box.width), np.uint8)
    for mask, region in masks:
        # the part of the region that lies inside the box
        x0, y0 = max(region.xmin, box.xmin), max(region.ymin, box.ymin)
        x1, y1 = min(region.xmax, box.xmax), min(region.ymax, box.ymax)
        if x1 <= x0 or y1 <= y0:
            continue
        part = mask[y0 - region.ymin : y1 - region.ymin, x0 - region.xmin : x1 - region.xmin] > 0
        out[y0 - box.ymin : y1 - box.ymin, x0 - box.xmin : x1 - box.xmin] |= part.astype(np.uint8)
    while True:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(out, connectivity=8)
        if n <= 2:
            return out
        order = np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable")[:2] + 1
        pieces = [(labels == i).astype(np.uint8) for i in order]
        points = [cv2.findContours(p, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0].reshape(-1, 2) for p in pieces]
        d = ((points[0][:, None, :].astype(np.int64) - points[1][None, :, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        half_widths = [float(cv2.distanceTransform(p, cv2.DIST_L2, 3).max()) for p in pieces]
        thickness = max(3, int(round(2 * min(half_widths))))
        before = int(out.sum())
        cv2.line(out, tuple(int(v) for v in points[0][i]), tuple(int(v) for v in points[1][j]), 1, thickness)
        if int(out.sum()) == before:  # nothing drawn (cannot happen with two pieces): do not loop
            return out


def join_outline(masks: Sequence[tuple[np.ndarray, Box]], box: Box) -> Outline | None:
    """The outline of the chromosome that the masks (each over its region) make together, over
    ``box`` (their boxes' union)."""
    return mask_outline(join_masks(masks, box), box)
