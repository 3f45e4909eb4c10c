"""What the mask network sees, and how its answer goes back to image pixels (no torch here).

The network is asked about one box at a time: a square window centred on the box, a
little larger than it (so the network sees the neighbour that crosses or touches), resized
to ``MASK_SIZE``. Two channels: the enhanced image (``preprocess.enhance_image``: the
classifier's denoising, contrast and canonical polarity, chromosome bright on black) and
the box itself as a filled rectangle, which tells the network *which* of two crossing
chromosomes is meant: their boxes differ even where their ink is shared.
"""

from __future__ import annotations

import cv2
import numpy as np

from .document import Box

MASK_SIZE = 64  # network input side; a chromosome's box spans ~40 of it
WINDOW_SCALE = 1.6  # window side / the box's longer side
WINDOW_PAD = 6  # pixels added to the window side (short chromosomes need some context too)


def mask_window(box: Box, scale: float = WINDOW_SCALE) -> Box:
    """The square window around ``box`` (may reach beyond the image: padded with background)."""
    side = int(round(max(box.width, box.height) * scale)) + WINDOW_PAD
    cx2, cy2 = box.xmin + box.xmax, box.ymin + box.ymax  # twice the centre: stays integer
    x0, y0 = (cx2 - side) // 2, (cy2 - side) // 2
    return Box(x0, y0, x0 + side, y0 + side)


def cut_window(image: np.ndarray, window: Box, fill: float = 0) -> np.ndarray:
    """``image`` inside ``window``, with ``fill`` where the window leaves the image."""
    h, w = image.shape[:2]
    out = np.full((window.height, window.width), fill, dtype=image.dtype)
    src = window.clipped(w, h)
    if not src.is_empty():
        out[src.ymin - window.ymin : src.ymax - window.ymin, src.xmin - window.xmin : src.xmax - window.xmin] = \
            image[src.ymin : src.ymax, src.xmin : src.xmax]
    return out


def mask_input(enhanced: np.ndarray, box: Box, size: int = MASK_SIZE, scale: float = WINDOW_SCALE
               ) -> tuple[np.ndarray, Box]:
    """float32 (2, size, size) network input for ``box`` and the window it covers."""
    window = mask_window(box, scale)
    pixels = cut_window(enhanced, window)
    interp = cv2.INTER_AREA if window.width > size else cv2.INTER_LINEAR
    grey = cv2.resize(pixels, (size, size), interpolation=interp).astype(np.float32) / 255.0
    return np.stack([grey, box_channel(box, window, size)]), window


def box_channel(box: Box, window: Box, size: int) -> np.ndarray:
    """The box as a filled rectangle in the window's resized frame."""
    f = size / window.width
    out = np.zeros((size, size), np.float32)
    x0, x1 = int(round((box.xmin - window.xmin) * f)), int(round((box.xmax - window.xmin) * f))
    y0, y1 = int(round((box.ymin - window.ymin) * f)), int(round((box.ymax - window.ymin) * f))
    out[max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)] = 1.0
    return out


def window_mask(prob: np.ndarray, window: Box, region: Box, threshold: float = 0.5) -> np.ndarray:
    """The network's probability map (size x size, over ``window``) as a uint8 0/1 mask over
    ``region`` (image pixels; e.g. the box with the preprocessing margin)."""
    full = cv2.resize(prob.astype(np.float32), (window.width, window.height), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((region.height, region.width), np.uint8)
    inter = Box(max(region.xmin, window.xmin), max(region.ymin, window.ymin),
                min(region.xmax, window.xmax), min(region.ymax, window.ymax))
    if inter.is_empty():
        return out
    part = full[inter.ymin - window.ymin : inter.ymax - window.ymin, inter.xmin - window.xmin : inter.xmax - window.xmin]
    out[inter.ymin - region.ymin : inter.ymax - region.ymin, inter.xmin - region.xmin : inter.xmax - region.xmin] = \
        part > threshold
    return out


def window_target(mask: np.ndarray, where: Box, window: Box, size: int = MASK_SIZE) -> np.ndarray:
    """A 0/1 mask covering ``where`` (image pixels) as a float32 (size, size) training target
    in ``window``'s frame."""
    canvas = np.zeros((window.height, window.width), np.float32)
    inter = Box(max(where.xmin, window.xmin), max(where.ymin, window.ymin),
                min(where.xmax, window.xmax), min(where.ymax, window.ymax))
    if not inter.is_empty():
        canvas[inter.ymin - window.ymin : inter.ymax - window.ymin, inter.xmin - window.xmin : inter.xmax - window.xmin] = \
            mask[inter.ymin - where.ymin : inter.ymax - where.ymin, inter.xmin - where.xmin : inter.xmax - where.xmin]
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
