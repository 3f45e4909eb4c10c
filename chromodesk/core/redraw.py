"""Redrawing a chromosome's outline by hand, with a round brush or as a polygon: the geometry, without Qt.

Both give the chromosome's new box and outline (``outline.mask_outline`` layout); the caller
stores the outline as the technician's (``outline_by_hand``) so that classification keeps it.
The brush works on the chromosome's mask as the knife does (``edit_masks.record_mask``: inside
its outline when it has one, else the threshold mask of its box).

Points are image pixel coordinates as outlines store them: pixel (i, j) is centred on (i, j),
which is the image view's coordinates less half a pixel.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .document import Box
from .edit_masks import EditRefused
from .limits import MAX_OUTLINE_POINTS
from .outline import Outline, mask_outline, outline_box, outline_mask

MAX_BRUSH_RADIUS = 100.0  # pixels
MIN_POLYGON_AREA = 4.0  # square pixels: less is a slip (three clicks in a row, a double click)

Point = tuple[float, float]


def paint_mask(mask: np.ndarray, region: Box, stroke: Sequence[Point], radius: float, *,
               image_size: tuple[int, int], erase: bool = False) -> tuple[Box, Outline]:
    """The new (box, outline) after one brush stroke over a chromosome's 0/1 ``mask`` (lying over
    ``region``): every pixel within ``radius`` of the stroke's polyline is added (or, ``erase``,
    taken away). ``image_size``: (width, height).

    Painting may go past the box: a chromosome that its box cut short must be able to grow, so
    the canvas takes in the stroke (within the image) and the box follows the new outline.
    One piece stays: the one that keeps most of the old mask (an erased band splits it: the larger
    piece stays; a dab that does not touch the chromosome is dropped), or the largest one where
    there was no mask. Raises ``EditRefused`` when nothing would be left or nothing changes."""
    points = _points(stroke)
    if len(points) == 0:
        raise EditRefused("no brush stroke")
    if not 0.5 <= radius <= MAX_BRUSH_RADIUS:
        raise EditRefused(f"brush radius {radius:g} px is outside 0.5 to {MAX_BRUSH_RADIUS:g} px")
    width, height = image_size
    reach = int(np.ceil(radius)) + 1
    canvas = Box(min(region.xmin, int(np.floor(points[:, 0].min())) - reach),
                 min(region.ymin, int(np.floor(points[:, 1].min())) - reach),
                 max(region.xmax, int(np.ceil(points[:, 0].max())) + reach + 1),
                 max(region.ymax, int(np.ceil(points[:, 1].max())) + reach + 1)).clipped(width, height)
    brush = _swept_disc(points - [canvas.xmin, canvas.ymin], radius, (canvas.height, canvas.width))
    if not brush.any():
        raise EditRefused("the brush stroke lies outside the image")
    old = _paste((np.asarray(mask) > 0).astype(np.uint8), region, canvas)
    new = old & (1 - brush) if erase else old | brush
    kept = _keep_one(new, old)
    if kept is None:
        raise EditRefused("erasing that would leave nothing of the chromosome")
    if np.array_equal(_filled(kept), _filled(old)):  # an outline has no holes: erasing inside changes nothing
        hint = "erase across the chromosome's edge" if erase else "paint from the chromosome's edge outwards"
        raise EditRefused(f"the stroke does not change the outline: {hint}")
    outline = _outline(kept, canvas)
    if outline is None:
        raise EditRefused("too little of the chromosome would be left for an outline")
    return outline_box(outline), outline


def polygon_mask(points: Sequence[Point], image_size: tuple[int, int]) -> tuple[Box, Outline]:
    """A polygon the technician drew as a chromosome's new outline: (box, outline). Its points are
    rounded to whole pixels and repeats dropped; a polygon inside the image is kept point for
    point, one that crosses the image's edge is cut to the image. Raises ``EditRefused`` for
    fewer than 3 points, no area, or nothing inside the image."""
    pts = np.round(_points(points)).astype(np.int64)
    keep = [p for i, p in enumerate(pts) if i == 0 or not np.array_equal(p, pts[i - 1])]
    while len(keep) > 1 and np.array_equal(keep[0], keep[-1]):  # closed by clicking the first point again
        keep.pop()
    if len(keep) < 3:
        raise EditRefused("an outline needs at least 3 different points")
    pts = np.asarray(keep)
    x, y = pts[:, 0].astype(float), pts[:, 1].astype(float)
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area < MIN_POLYGON_AREA:
        raise EditRefused(f"the outline encloses no area ({area:.0f} px²): click round the chromosome")
    width, height = image_size
    inside = bool((pts >= 0).all() and (pts[:, 0] < width).all() and (pts[:, 1] < height).all())
    if inside and len(pts) <= MAX_OUTLINE_POINTS:
        outline = tuple((int(px), int(py)) for px, py in pts)
        return outline_box(outline), outline
    # crosses the image's edge (or has more points than a session keeps): cut by rasterising
    canvas = Box(int(x.min()), int(y.min()), int(x.max()) + 1, int(y.max()) + 1).clipped(width, height)
    filled = outline_mask(pts, canvas) if not canvas.is_empty() else np.zeros((0, 0), np.uint8)
    outline = _outline(filled, canvas) if filled.any() else None
    if outline is None:
        raise EditRefused("the outline lies outside the image")
    return outline_box(outline), outline


# -- helpers ------------------------------------------------------------------------------------------
def _points(points: Sequence[Point]) -> np.ndarray:
    pts = np.asarray(points, float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.isfinite(pts).all():
        raise EditRefused("points that are not numbers")
    return pts


def _paste(mask: np.ndarray, region: Box, canvas: Box) -> np.ndarray:
    """``mask`` (over ``region``) on a zero canvas; what lies outside the canvas is cut."""
    out = np.zeros((canvas.height, canvas.width), np.uint8)
    x0, y0 = max(region.xmin, canvas.xmin), max(region.ymin, canvas.ymin)
    x1, y1 = min(region.xmax, canvas.xmax), min(region.ymax, canvas.ymax)
    if x1 > x0 and y1 > y0:
        out[y0 - canvas.ymin:y1 - canvas.ymin, x0 - canvas.xmin:x1 - canvas.xmin] = \
            mask[y0 - region.ymin:y1 - region.ymin, x0 - region.xmin:x1 - region.xmin]
    return out


def _swept_disc(points: np.ndarray, radius: float, shape: tuple[int, int]) -> np.ndarray:
    """0/1: the pixels whose centre lies within ``radius`` of the polyline (canvas pixels)."""
    away = np.ones(shape, np.uint8)  # 0 on the stroke's centre line
    fixed = np.round(points * 16).astype(np.int64)  # cv2 takes sub-pixel points as 4-bit fixed point
    for a, b in zip(fixed, fixed[1:] if len(fixed) > 1 else fixed):
        cv2.line(away, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 0, 1, cv2.LINE_8, 4)
    if away.all():  # the stroke lies outside the canvas
        return np.zeros(shape, np.uint8)
    return (cv2.distanceTransform(away, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= radius).astype(np.uint8)


def _keep_one(new: np.ndarray, old: np.ndarray) -> np.ndarray | None:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(new, connectivity=8)
    if n <= 1:
        return None
    overlap = np.bincount(labels[old > 0], minlength=n)[1:] if old.any() else np.zeros(n - 1, int)
    score = overlap if overlap.any() else stats[1:, cv2.CC_STAT_AREA]
    return (labels == int(np.argmax(score)) + 1).astype(np.uint8)


def _filled(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.zeros_like(mask)
    cv2.drawContours(out, contours, -1, 1, cv2.FILLED)
    return out


def _outline(mask: np.ndarray, canvas: Box) -> Outline | None:
    """The mask's outline, simplified further if a session could not keep all its points."""
    tolerance = 0.6
    outline = mask_outline(mask, canvas, tolerance)
    while outline is not None and len(outline) > MAX_OUTLINE_POINTS:
        tolerance *= 2
        outline = mask_outline(mask, canvas, tolerance)
    return outline
