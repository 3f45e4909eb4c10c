"""A chromosome's mask as an outline (its outer contour in image pixels) and back.

The outline is what the document keeps, saves, exports (``analyze --json``'s ``outline``)
and draws: a few dozen points instead of a bitmap, readable by any tool, and editable.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .document import Box

Outline = tuple[tuple[int, int], ...]


def mask_outline(mask: np.ndarray, region: Box, tolerance: float = 0.6) -> Outline | None:
    """The outer contour of the mask's largest piece, in image pixels (``region`` is where the
    mask lies). ``tolerance``: the most a simplified point may move, in pixels."""
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    biggest = max(contours, key=cv2.contourArea)
    simple = cv2.approxPolyDP(biggest, tolerance, True).reshape(-1, 2)
    if len(simple) < 3:
        return None
    return tuple((int(x) + region.xmin, int(y) + region.ymin) for x, y in simple)


def outline_mask(points: Sequence[Sequence[int]], region: Box) -> np.ndarray:
    """0/1 uint8 over ``region``: the pixels the outline encloses (its boundary included)."""
    out = np.zeros((max(region.height, 0), max(region.width, 0)), np.uint8)
    if len(points) >= 3 and out.size:
        pts = np.asarray(points, np.int32) - [region.xmin, region.ymin]
        cv2.fillPoly(out, [pts], 1)
        cv2.polylines(out, [pts], True, 1)
    return out


def outline_box(points: Sequence[Sequence[int]]) -> Box:
    pts = np.asarray(points)
    return Box(int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()) + 1, int(pts[:, 1].max()) + 1)


def outlines_json(doc) -> dict:
    """Every chromosome's outline, in the per-image JSON layout of the polygon data set (``image``,
    ``width``, ``height``, ``objects`` = ``label`` + ``points``), so a lab's reviewed outlines can
    train the mask network again (``chromodesk-train masks --polygons``); ``by_hand`` marks the
    outlines a technician drew (knife, join, brush, polygon). Boxes that hold no
    chromosome, and chromosomes without an outline, are left out."""
    from pathlib import Path

    objects = []
    for r in doc:
        if r.rejected or not r.outline:
            continue
        objects.append({"id": r.id, "label": r.label or "chr", "box": r.box.as_list(),
                        "points": [list(p) for p in r.outline], "by_hand": r.outline_by_hand})
    return {"format": "chromodesk-outlines", "image": Path(doc.image_path).name, "width": doc.width,
            "height": doc.height, "objects": objects}
