"""Straighten a bent chromosome along its medial axis, as a cytogeneticist's karyogram shows it.

The mask's skeleton gives the medial axis; its longest path, extended to the mask's two ends
and smoothed, is the chromosome's centre line; the picture is then resampled along the
normals of that line (one output row per pixel of arc length), so the bands come out as
straight horizontal stripes in the order they have along the chromosome. A chromosome that
is already nearly straight is left to the plain upright turn (less resampling blur).
"""

from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from skimage.morphology import skeletonize

STRAIGHT_ENOUGH = 0.93  # end-to-end distance / length of the centre line above which no resampling is done
BRANCHLESS = 0.8  # the centre line must hold this share of the skeleton (side branches are short spurs)
KEPT = (0.85, 1.2)  # the straightened mask's area / the mask's: outside this the resampling lost or doubled ink


def _longest_path(skeleton: np.ndarray) -> np.ndarray:
    """The longest of the shortest paths between skeleton pixels (two breadth-first searches),
    as (n, 2) x, y points in order."""
    ys, xs = np.nonzero(skeleton)
    index = {(int(y), int(x)): i for i, (y, x) in enumerate(zip(ys, xs))}
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]

    def bfs(start: int) -> tuple[int, list[int]]:
        parent = {start: -1}
        queue = deque([start])
        last = start
        while queue:
            last = queue.popleft()
            y, x = int(ys[last]), int(xs[last])
            for dy, dx in steps:
                j = index.get((y + dy, x + dx))
                if j is not None and j not in parent:
                    parent[j] = last
                    queue.append(j)
        path = [last]
        while parent[path[-1]] != -1:
            path.append(parent[path[-1]])
        return last, path

    far, _ = bfs(0)
    _, path = bfs(far)
    return np.stack([xs[path], ys[path]], axis=1).astype(np.float64)


def _extend_to_edge(path: np.ndarray, mask: np.ndarray, reach: int = 8) -> np.ndarray:
    """Continue each end along its last direction while it stays inside the mask: a skeleton
    stops about half a width short of the chromosome's tips."""
    h, w = mask.shape
    for end in (0, 1):
        pts = path if end == 1 else path[::-1]
        tail = pts[-min(len(pts), reach):]
        d = tail[-1] - tail[0]
        norm = float(np.hypot(*d))
        if norm < 1e-6:
            continue
        d /= norm
        extra, p = [], tail[-1].copy()
        for _ in range(max(h, w)):
            p = p + d
            x, y = int(round(p[0])), int(round(p[1]))
            if not (0 <= x < w and 0 <= y < h) or not mask[y, x]:
                break
            extra.append(p.copy())
        if extra:
            pts = np.vstack([pts, np.array(extra)])
        path = pts if end == 1 else pts[::-1]
    return path


def _resample(path: np.ndarray, step: float = 1.0) -> np.ndarray:
    seg = np.hypot(*np.diff(path, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 2:
        return path
    t = np.arange(0.0, s[-1] + 1e-9, step)
    return np.stack([np.interp(t, s, path[:, 0]), np.interp(t, s, path[:, 1])], axis=1)


def centre_line(mask: np.ndarray) -> np.ndarray | None:
    """Smoothed centre line of the mask, (n, 2) x, y points one pixel apart; None if there is none."""
    if mask.sum() < 20:
        return None
    smooth = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    skeleton = skeletonize(smooth > 0)
    if skeleton.sum() < 3:
        return None
    width = float(cv2.distanceTransform(smooth, cv2.DIST_L2, 3).max())
    path = _longest_path(skeleton)
    if len(path) < BRANCHLESS * skeleton.sum():
        return None  # a cross, a Y or a blob, not one bent chromosome: no single centre line
    path = _resample(path)
    # smooth before extending: the skeleton's last pixels bend towards a corner of the tip
    path = np.stack([gaussian_filter1d(path[:, i], max(width / 2, 1.0), mode="nearest") for i in (0, 1)], axis=1)
    path = _resample(_extend_to_edge(path, smooth > 0))
    return path if len(path) >= 3 else None


def straighten(ink: np.ndarray, mask: np.ndarray, top: tuple[float, float] | None = None,
               threshold: float = STRAIGHT_ENOUGH) -> tuple[np.ndarray, np.ndarray] | None:
    """``ink`` (darkness, 0 = background) and ``mask`` resampled along the centre line: the
    chromosome vertical and straight, the end nearer ``top`` (x, y in the same frame) on top.
    None when the chromosome is straight enough already (or too small to have a centre line)."""
    line = centre_line(mask)
    if line is None:
        return None
    length = len(line)
    chord = float(np.hypot(*(line[-1] - line[0])))
    if length < 12 or chord >= threshold * length:
        return None
    if top is not None and np.hypot(*(line[-1] - top)) < np.hypot(*(line[0] - top)):
        line = line[::-1]
    tangent = np.gradient(line, axis=0)
    tangent /= np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-9)[:, None]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    half = int(math.ceil(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3).max() * 1.6)) + 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    # output row i, column j <- the point line[i] + offsets[j] * normal[i]
    map_x = (line[:, None, 0] + offsets[None, :] * normal[:, None, 0]).astype(np.float32)
    map_y = (line[:, None, 1] + offsets[None, :] * normal[:, None, 1]).astype(np.float32)
    # the normal lines of a tight bend cross each other; keep, per output pixel, only what belongs to the mask
    out_mask = cv2.remap(mask.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderValue=0) > 0.5
    out_ink = cv2.remap(ink.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderValue=0)
    out_mask = _keep_centre_piece(out_mask.astype(np.uint8), half)
    if not KEPT[0] <= out_mask.sum() / max(float(mask.sum()), 1.0) <= KEPT[1]:
        return None
    out_ink = np.clip(out_ink * out_mask, 0, 255).astype(np.uint8)
    return out_ink, out_mask


def _keep_centre_piece(mask: np.ndarray, centre_col: int) -> np.ndarray:
    """Only the part connected to the centre line (where the normals of a bend reach across to
    another stretch of the same chromosome, that stretch appears a second time: drop it)."""
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    if n <= 2:
        return mask
    on_line = labels[:, centre_col]
    counts = np.bincount(on_line[on_line > 0], minlength=n)
    return (labels == int(np.argmax(counts))).astype(np.uint8) if counts.any() else mask
