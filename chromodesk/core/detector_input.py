"""What the learned detector sees: one function shared by training and inference.

The Tseng metaphases are all at one magnification (the median chromosome is 70-98 px
long in 95% of the images, whatever the image size), so the detector works at a fixed
scale instead of a fixed image size: the image is shrunk by ``scale`` (0.5: a median
chromosome ~40 px long), turned to canonical polarity (chromosome bright on dark, as
the classifier's crops) and standardised by its own background level and spread.
"""

from __future__ import annotations

import cv2
import numpy as np

from .preprocess import needs_inversion

# the network's output stride; inputs are padded to a multiple of its deepest stride
OUTPUT_STRIDE = 4
PAD_MULTIPLE = 32


def detector_input(gray: np.ndarray, scale: float, polarity: str = "auto") -> np.ndarray:
    """8-bit grey image -> float32 (H', W') at ``scale``, chromosomes bright, ~zero-mean background."""
    if gray.ndim != 2:
        raise ValueError("detector_input takes a 2-D grey image")
    img = 255 - gray if needs_inversion(gray, polarity) else gray
    if scale != 1.0:
        h, w = img.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    x = img.astype(np.float32)
    # the background is the majority of a metaphase: its median is the zero, the spread of
    # the brighter half (the chromosomes) the unit, so stain strength and exposure drop out
    bg = float(np.median(x))
    spread = float(np.percentile(x, 99) - bg)
    return (x - bg) / max(spread, 8.0)


def pad_to_multiple(x: np.ndarray, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """Pad bottom/right with the background value (0) so every stride divides the size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad)
