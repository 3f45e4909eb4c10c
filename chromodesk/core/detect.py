"""Classical chromosome detection: boxes for a whole metaphase without a trained model.

Steps: denoise -> CLAHE -> threshold (chromosomes as foreground) -> morphological
clean-up -> connected components -> per component: debris / nucleus rejection, and a
distance-transform watershed for components that look like several touching
chromosomes. Every size and shape rule is relative to the image's own median object,
so the same parameters work at any magnification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .document import Box
from .errors import InputError
from .preprocess import PreprocessConfig, clahe, is_dark_on_light


@dataclass(frozen=True)
class DetectConfig:
    # -- enhancement
    denoise: str = "gaussian"  # nlm | median | gaussian | none
    nlm_h: float = 7.0
    blur_px: int = 3  # kernel side for median / gaussian
    clahe_clip: float = 2.0  # 0 disables CLAHE
    clahe_tile_px: int = 128
    polarity: str = "auto"  # auto | dark_on_light | light_on_dark
    # -- threshold
    threshold: str = "otsu"  # otsu | adaptive
    threshold_shift: float = 0.0  # 0 = Otsu; 1 = mean grey of the Otsu foreground
    adaptive_block_px: int = 51
    adaptive_offset: float = 10.0  # grey levels darker than the local mean to count as chromosome
    min_contrast: float = 25.0  # grey levels between object and background; below this, nothing to find
    # -- clean-up
    open_px: int = 3
    close_px: int = 3
    hole_rel_area: float = 0.1  # enclosed background up to this (x median object) is filled
    # -- components (areas relative to the median object of the image)
    min_area_px: int = 12  # absolute floor: JPEG specks
    speck_rel_area: float = 0.12
    thin_ratio: float = 0.6  # inscribed radius / equal-area disc radius below this = elongated
    faint_rel: float = 0.5  # objects with less than this share of the typical contrast are dropped
    nucleus_rel_area: float = 3.0
    nucleus_core_rel: float = 2.5  # opening radius, in median chromosome half-widths
    nucleus_rim_rel: float = 1.0  # extra margin cut around a nucleus (its pale rim)
    nucleus_solidity: float = 0.85
    nucleus_circularity: float = 0.45
    # -- splitting
    split_rel_area: float = 1.6  # components larger than this (x median) are candidates for splitting
    split_solidity: float = 0.7  # ... and so are less convex ones (crossings, touching ends)
    marker_rel_dist: float = 0.5  # watershed seeds: distance >= this x median half-width
    seed_source: str = "adaptive"  # mask | strict: seeds from the cores of a darker threshold
    strict_rel: float = 1.0  # darker threshold: share of the way from background to typical chromosome grey
    min_seed_rel_area: float = 0.1
    seed_levels: int = 5
    split_depth: int = 2
    relief: str = "distance"  # distance | intensity: what the watershed floods
    min_part_rel_area: float = 0.15
    box_pad_px: int = 5  # grow each box by this much (annotators draw slightly loose boxes)
    box_pad_rel: float = 0.0  # ... plus this x median half-width


def _validate(gray: np.ndarray) -> np.ndarray:
    if not isinstance(gray, np.ndarray):
        raise InputError(None, f"detect_chromosomes needs a numpy array, got {type(gray).__name__}")
    if gray.ndim != 2:
        raise InputError(None, f"detect_chromosomes needs a 2-D grey image, got shape {gray.shape}")
    if gray.shape[0] < 8 or gray.shape[1] < 8:
        raise InputError(None, f"image too small for detection: {gray.shape[1]}x{gray.shape[0]}")
    if gray.dtype != np.uint8:
        raise InputError(None, f"detect_chromosomes needs uint8 grey (see core.imaging), got {gray.dtype}")
    return gray


def _odd(n: int) -> int:
    return max(1, int(n) | 1)


def _kernel(px: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (px, px))


def enhance(gray: np.ndarray, cfg: DetectConfig) -> np.ndarray:
    """Denoised, contrast-equalised image with chromosomes bright (foreground high)."""
    if cfg.denoise == "nlm":
        img = cv2.fastNlMeansDenoising(gray, None, cfg.nlm_h, 7, 21)
    elif cfg.denoise == "median":
        img = cv2.medianBlur(gray, _odd(cfg.blur_px))
    elif cfg.denoise == "gaussian":
        img = cv2.GaussianBlur(gray, (_odd(cfg.blur_px), _odd(cfg.blur_px)), 0)
    elif cfg.denoise == "none":
        img = gray
    else:
        raise InputError(None, f"unknown denoise method {cfg.denoise!r}")
    if cfg.clahe_clip > 0:
        img = clahe(img, PreprocessConfig(clahe_clip=cfg.clahe_clip, clahe_tile_px=cfg.clahe_tile_px))
    if cfg.polarity == "dark_on_light" or (cfg.polarity == "auto" and is_dark_on_light(img)):
        img = 255 - img
    return img


def foreground(img: np.ndarray, cfg: DetectConfig) -> np.ndarray:
    """Binary mask (0/1) of chromosome pixels in the bright-foreground image."""
    lo, hi = np.percentile(img, (5, 99.5))
    if hi - lo < cfg.min_contrast:  # blank or nearly uniform image: Otsu would split noise
        return np.zeros(img.shape, np.uint8)
    if cfg.threshold == "otsu":
        otsu, _ = cv2.threshold(img, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        # Otsu sits midway into the blurred rim; moving toward the chromosome grey level
        # reopens the pale gaps between touching chromosomes
        level = otsu + cfg.threshold_shift * (float(img[img > otsu].mean()) - otsu) if (img > otsu).any() else otsu
        mask = (img > level).astype(np.uint8)
    elif cfg.threshold == "adaptive":
        mask = cv2.adaptiveThreshold(img, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY,
                                     _odd(cfg.adaptive_block_px), -cfg.adaptive_offset)
    else:
        raise InputError(None, f"unknown threshold method {cfg.threshold!r}")
    if cfg.open_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _kernel(cfg.open_px))
    if cfg.close_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _kernel(cfg.close_px))
    return mask


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill enclosed background regions up to ``max_area`` pixels.

    Pale bands inside a chromosome leave small holes; a loop of several chromosomes
    encloses a large one, which must stay background or the loop becomes one blob.
    """
    padded = np.pad(mask, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = (flood[1:-1, 1:-1] == 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_area)
    small = small[small > 0]
    out = mask.copy()
    out[np.isin(labels, small)] = 1
    return out


@dataclass
class _Blob:
    x: int
    y: int
    w: int
    h: int
    area: int
    mask: np.ndarray  # 0/1, h x w, this component only

    def solidity(self) -> float:
        hull = cv2.convexHull(_points(self.mask))
        hull_area = cv2.contourArea(hull)
        return self.area / hull_area if hull_area > 0 else 1.0

    def circularity(self) -> float:
        contours, _ = cv2.findContours(self.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        perimeter = sum(cv2.arcLength(c, True) for c in contours)
        return 4.0 * math.pi * self.area / (perimeter * perimeter) if perimeter > 0 else 0.0

    def box(self) -> Box:
        return Box(self.x, self.y, self.x + self.w, self.y + self.h)


def _points(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.stack([xs, ys], axis=1).astype(np.int32)


def _components(mask: np.ndarray, min_area: int) -> list[_Blob]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    blobs = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        blobs.append(_Blob(x, y, w, h, area, (labels[y : y + h, x : x + w] == i).astype(np.uint8)))
    return blobs


def _needs_split(blob: _Blob, median_area: float, cfg: DetectConfig) -> bool:
    return blob.area >= cfg.split_rel_area * median_area or blob.solidity() < cfg.split_solidity


def _split(blob: _Blob, img: np.ndarray, strict: float, half_width: float, median_area: float,
           cfg: DetectConfig, depth: int = 0) -> list[_Blob]:
    """Watershed inside one blob, seeded by its thick and dark cores."""
    mask = np.pad(blob.mask, 1)
    patch = np.pad(img[blob.y : blob.y + blob.h, blob.x : blob.x + blob.w], 1)
    def seeds_at(level):
        core = ((patch > level) & (mask > 0)).astype(np.uint8)
        dist = cv2.distanceTransform(core, cv2.DIST_L2, 5)
        seeds = (dist >= cfg.marker_rel_dist * half_width).astype(np.uint8)
        n, markers, stats, _ = cv2.connectedComponentsWithStats(seeds, connectivity=8)
        big = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= cfg.min_seed_rel_area * median_area]
        return n, markers, big

    if cfg.seed_source == "strict":
        # a darker threshold opens the pale gap between touching chromosomes
        n, markers, big = seeds_at(strict)
    elif cfg.seed_source == "adaptive":
        best = None
        for level in np.linspace(-1, strict, cfg.seed_levels):
            cand = seeds_at(level)
            if best is None or len(cand[2]) > len(best[2]):
                best = cand
        n, markers, big = best
    else:
        n, markers, big = seeds_at(-1)
    if len(big) < 2:  # zero or one seed: nothing to split
        return [blob]
    lut = np.zeros(n, np.int32)
    lut[big] = np.arange(1, len(big) + 1)
    markers = lut[markers]
    n = len(big) + 1
    markers[mask == 0] = n  # background is its own basin so the parts stop at the blob's edge
    if cfg.relief == "intensity":
        relief = 255 - patch
    else:
        relief = 255 - cv2.normalize(cv2.distanceTransform(mask, cv2.DIST_L2, 5), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    cv2.watershed(cv2.cvtColor(relief, cv2.COLOR_GRAY2BGR), markers)
    parts = []
    for k in range(1, n):
        part = ((markers == k) & (mask > 0)).astype(np.uint8)
        area = int(part.sum())
        if area < cfg.min_part_rel_area * median_area:
            continue
        ys, xs = np.nonzero(part)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        parts.append(_Blob(blob.x + x0 - 1, blob.y + y0 - 1, x1 - x0, y1 - y0, area, part[y0:y1, x0:x1]))
    if not parts:
        return [blob]
    if depth + 1 >= cfg.split_depth or len(parts) < 2:
        return parts
    # each part gets its own best threshold: one level rarely suits a whole cluster
    out = []
    for part in parts:
        if _needs_split(part, median_area, cfg):
            out.extend(_split(part, img, strict, half_width, median_area, cfg, depth + 1))
        else:
            out.append(part)
    return out


def _inscribed_radius(mask: np.ndarray) -> float:
    return float(cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 5).max())


def _typical_object(blobs: list[_Blob], cfg: DetectConfig) -> tuple[float, float]:
    """Median area and median half-width of the elongated (chromosome-like) objects.

    A plain median is pulled down by debris (often 100+ specks) and up by nuclei and
    clusters. Both specks and nuclei are compact: their inscribed radius is close to
    the radius of a disc of the same area, a chromosome's is far below it.
    """
    areas = np.array([b.area for b in blobs], dtype=np.float64)
    radii = np.array([_inscribed_radius(b.mask) for b in blobs])
    thin = radii < cfg.thin_ratio * np.sqrt(areas / math.pi)
    if thin.sum() < 3:  # no elongated objects: fall back on everything
        thin[:] = True
    return float(np.median(areas[thin])), float(np.median(radii[thin]))


def remove_nuclei(mask: np.ndarray, half_width: float, median_area: float, cfg: DetectConfig) -> np.ndarray:
    """Drop interphase nuclei, even where chromosomes touch them.

    A nucleus is thick: an opening with a disc several chromosome half-widths across
    removes every chromosome (and touching pairs) but keeps the nucleus. Opened regions
    much bigger than the median object are cut out with a margin for their pale rim.
    """
    radius = cfg.nucleus_core_rel * half_width
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    core = (dist >= radius).astype(np.uint8)
    if not core.any():
        return mask
    reach = cv2.distanceTransform(1 - core, cv2.DIST_L2, 5)
    opened = (reach <= radius).astype(np.uint8) & mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= cfg.nucleus_rel_area * median_area)
    big = big[big > 0]
    if len(big) == 0:
        return mask
    nucleus_core = np.isin(labels, big) & (core > 0)
    near = cv2.distanceTransform((~nucleus_core).astype(np.uint8), cv2.DIST_L2, 5)
    out = mask.copy()
    out[near <= radius + cfg.nucleus_rim_rel * half_width] = 0
    return out


def detect_chromosomes(gray: np.ndarray, cfg: DetectConfig = DetectConfig()) -> list[Box]:
    """Boxes of the chromosomes in a metaphase, sorted top-to-bottom then left-to-right.

    ``gray`` is uint8 H x W (``core.imaging.load_gray``). Boxes are 0-based with
    exclusive ends. An image without objects gives an empty list.
    """
    gray = _validate(gray)
    height, width = gray.shape
    img = enhance(gray, cfg)
    mask = foreground(img, cfg)
    blobs = _components(mask, cfg.min_area_px)
    if not blobs:
        return []
    median_area, half_width = _typical_object(blobs, cfg)
    mask = fill_small_holes(mask, cfg.hole_rel_area * median_area)
    mask = remove_nuclei(mask, half_width, median_area, cfg)
    blobs = _components(mask, cfg.min_area_px)
    if not blobs:
        return []
    background = float(np.median(img[mask == 0])) if (mask == 0).any() else 0.0
    darkness = np.array([float(img[b.y : b.y + b.h, b.x : b.x + b.w][b.mask > 0].mean()) for b in blobs])
    typical = float(np.median(darkness))
    strict = background + cfg.strict_rel * (typical - background)
    kept: list[_Blob] = []
    for blob, dark in zip(blobs, darkness):
        rel = blob.area / median_area
        if rel < cfg.speck_rel_area:
            continue
        if dark - background < cfg.faint_rel * (typical - background):
            continue  # cytoplasm, fibres, out-of-focus smears: much paler than chromosomes
        if rel >= cfg.nucleus_rel_area:
            if blob.solidity() >= cfg.nucleus_solidity and blob.circularity() >= cfg.nucleus_circularity:
                continue  # interphase nucleus: big, round and convex
        if _needs_split(blob, median_area, cfg):
            kept.extend(_split(blob, img, strict, half_width, median_area, cfg))
        else:
            kept.append(blob)
    pad = cfg.box_pad_px + int(round(cfg.box_pad_rel * half_width))
    boxes = [Box(b.x - pad, b.y - pad, b.x + b.w + pad, b.y + b.h + pad).clipped(width, height) for b in kept]
    return sorted(boxes, key=lambda b: (b.ymin, b.xmin, b.ymax, b.xmax))
