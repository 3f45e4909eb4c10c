"""Chromosome preprocessing: one small function per step, every parameter in PreprocessConfig.

Training (``training.data``) and inference (``chromodesk.pipeline``) both call
``preprocess_cell``: there is exactly one code path from pixels to network input.

Steps, after the source report: grey -> Non-Local Means denoising -> CLAHE -> one
canonical polarity (chromosome bright on black) -> per box: crop with a margin ->
Otsu binarisation + morphological clean-up -> keep the connected component that fills
most of the box (a neighbour reaching into the box is removed) -> apply the mask ->
turn the long axis upright -> pad to a square keeping the aspect ratio -> resize.
Denoising and CLAHE run once per image instead of once per crop: same filter, one call
instead of 46, and crops near each other see the same contrast mapping.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import cv2
import numpy as np

from .document import Box

FEATURE_NAMES = ("log_rel_area", "log_rel_length", "log_rel_width", "log_rel_density", "length_rank")
# what the "not a chromosome" network reads besides FEATURE_NAMES: how the box sits on what it
# holds. A box on background that clips a neighbour holds a piece cut straight by the box edge,
# fills little of the box, or is much larger or smaller than the cell's other boxes.
BOX_FEATURE_NAMES = ("edge_cut", "box_fill", "log_rel_box_area")
# part of the config digest: bump when the code changes the crops a config gives, so that
# cached training crops are made again (2: crop folders decide the polarity per cell)
REVISION = 2


@dataclass(frozen=True)
class PreprocessConfig:
    size: int = 64  # network input, pixels per side
    margin: int = 4  # pixels added around each box before segmentation
    nlm_h: float = 7.0  # Non-Local Means filter strength (0 disables)
    nlm_template: int = 7
    # 9 px search window: 4x cheaper than the report's 21 px (NLM cost grows with its square),
    # crops differ by ~1 grey level on average, and the model is trained on exactly these crops
    nlm_search: int = 9
    clahe_clip: float = 2.0
    clahe_tile_px: int = 128  # CLAHE tile side in pixels (a tile count would over-equalise small crops)
    morph_kernel: int = 3  # opening then closing, elliptical kernel
    polarity: str = "auto"  # auto | dark_on_light (G-band) | light_on_dark (Q-band)
    upright: bool = True  # rotate each chromosome so its long axis is vertical
    # cut each crop inside the mask network's outline (a model must be trained on such crops: the
    # shipped one was trained on threshold crops, and outlines alone cost it 0.6 points; README)
    outlines: bool = False
    # straighten a bent chromosome along its centre line in the finished crop (``straighten_crop``);
    # a function of the crop alone, so cached crops of the same config without it can be reused
    straighten: bool = False
    # also cut every crop by threshold + largest component (``CellCrops.companion_*``), for the
    # classifier's companion network, which was trained on such crops: two networks reading the
    # chromosome with and without its neighbours err on different chromosomes (README)
    companion_crops: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def digest(self) -> str:
        """Stable short hash: the key of on-disk crop caches."""
        keyed = dict(self.to_dict(), revision=REVISION)
        for newer in ("outlines", "straighten", "companion_crops"):
            if not keyed[newer]:
                del keyed[newer]  # configs from before these existed keep their digest (and their caches)
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class CellCrops:
    """Network inputs for the chromosomes of one cell, in box order."""

    images: np.ndarray  # uint8, N x size x size, chromosome bright on black
    features: np.ndarray  # float32, N x len(FEATURE_NAMES), relative to the cell
    raw: list[dict] = field(default_factory=list)  # per crop: area, length, width, density, angle
    masks: list[np.ndarray | None] | None = None  # per crop: the outline used (over ``mask_regions``), if any
    # float32, N x (len(FEATURE_NAMES) + len(BOX_FEATURE_NAMES)): what the reject network reads
    reject_features: np.ndarray | None = None
    # the whole image as the crops were cut from it (``enhance_image``); the app keeps it for the
    # knife, join and brush, which would otherwise compute it again on the GUI thread
    enhanced: np.ndarray | None = None
    # the companion network's inputs (``PreprocessConfig.companion_crops``): the same chromosomes
    # cut by threshold + largest component (a hand-made outline still cuts them), and their features
    companion_images: np.ndarray | None = None
    companion_features: np.ndarray | None = None

    def part(self, index: slice) -> "CellCrops":
        """The network inputs of some of the crops (the app classifies a cell in chunks)."""
        cut = lambda a: None if a is None else a[index]  # noqa: E731
        return CellCrops(self.images[index], self.features[index], self.raw[index], reject_features=cut(self.reject_features),
                         companion_images=cut(self.companion_images), companion_features=cut(self.companion_features))


# -- whole-image steps ---------------------------------------------------------------
def denoise(gray: np.ndarray, cfg: PreprocessConfig, workers: int | None = None) -> np.ndarray:
    """Non-Local Means over the whole image, in horizontal strips on all cores.

    OpenCV's NLM runs on one core; a pixel's result depends only on the pixels within
    search/2 + template/2 of it, so strips overlapping by that much give a result identical
    to one call (tested), in a fraction of the time.
    """
    if cfg.nlm_h <= 0:
        return gray
    run = lambda img: cv2.fastNlMeansDenoising(img, None, cfg.nlm_h, cfg.nlm_template, cfg.nlm_search)  # noqa: E731
    workers = workers or min(os.cpu_count() or 1, 8)
    pad = cfg.nlm_search // 2 + cfg.nlm_template // 2
    height = gray.shape[0]
    if workers <= 1 or height < workers * 4 * pad:
        return run(gray)
    cuts = np.linspace(0, height, workers + 1).astype(int)
    spans = [(max(a - pad, 0), min(b + pad, height), a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    out = np.empty_like(gray)

    def strip(span):
        lo, hi, a, b = span
        out[a:b] = run(np.ascontiguousarray(gray[lo:hi]))[a - lo : b - lo]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(strip, spans))
    return out


def clahe(gray: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    h, w = gray.shape
    grid = (max(1, round(w / cfg.clahe_tile_px)), max(1, round(h / cfg.clahe_tile_px)))
    return cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=grid).apply(gray)


def is_dark_on_light(gray: np.ndarray) -> bool:
    """Background dominates a metaphase or a crop: a bright median means dark chromosomes."""
    lo, hi = np.percentile(gray, (1, 99))
    return float(np.median(gray)) > (lo + hi) / 2.0


def needs_inversion(pixels: np.ndarray, polarity: str) -> bool:
    """Whether ``pixels`` (a whole image, or every crop of a cell together) show dark chromosomes."""
    return polarity == "dark_on_light" or (polarity == "auto" and is_dark_on_light(pixels))


def canonical_polarity(gray: np.ndarray, cfg: PreprocessConfig, invert: bool | None = None) -> np.ndarray:
    """Chromosome bright on a dark background, whatever the stain."""
    if invert is None:
        invert = needs_inversion(gray, cfg.polarity)
    return 255 - gray if invert else gray


def enhance_image(gray: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    return canonical_polarity(clahe(denoise(gray, cfg), cfg), cfg)


# -- per-crop steps --------------------------------------------------------------------
def crop_with_margin(image: np.ndarray, box: Box, margin: int) -> tuple[np.ndarray, Box]:
    h, w = image.shape[:2]
    region = Box(box.xmin - margin, box.ymin - margin, box.xmax + margin, box.ymax + margin).clipped(w, h)
    return image[region.ymin : region.ymax, region.xmin : region.xmax], region


def otsu_mask(patch: np.ndarray, kernel: int) -> np.ndarray:
    _, binary = cv2.threshold(patch, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if kernel > 1:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, k)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, k)
    return binary.astype(np.uint8)


def main_component(binary: np.ndarray, inner: Box) -> np.ndarray:
    """The component with most pixels inside the original box (``inner``, patch coordinates)."""
    n, labels = cv2.connectedComponents(binary, connectivity=8)
    if n <= 1:
        return np.ones_like(binary)  # nothing segmented: keep the whole crop rather than nothing
    inside = labels[inner.ymin : inner.ymax, inner.xmin : inner.xmax]
    counts = np.bincount(inside.ravel(), minlength=n)
    counts[0] = 0
    best = int(np.argmax(counts))
    if counts[best] == 0:
        counts = np.bincount(labels.ravel(), minlength=n)
        counts[0] = 0
        best = int(np.argmax(counts))
    return (labels == best).astype(np.uint8)


def long_axis_angle(mask: np.ndarray) -> float:
    """Angle in degrees of the mask's major axis from the image x axis (second moments)."""
    m = cv2.moments(mask, binaryImage=True)
    if m["m00"] == 0:
        return 90.0
    return math.degrees(0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"]))


def rotate_upright(patch: np.ndarray, mask: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate so the major axis (``angle`` from x) becomes vertical; canvas grows to fit."""
    h, w = patch.shape
    turn = angle - 90.0  # y points down: a positive cv2 angle turns the picture counter-clockwise on screen
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), turn, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = int(math.ceil(h * sin + w * cos)), int(math.ceil(h * cos + w * sin))
    matrix[0, 2] += nw / 2.0 - w / 2.0
    matrix[1, 2] += nh / 2.0 - h / 2.0
    rotated = cv2.warpAffine(patch, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    rmask = cv2.warpAffine(mask, matrix, (nw, nh), flags=cv2.INTER_NEAREST, borderValue=0)
    return rotated, rmask


def upright_top(shape: tuple[int, int], angle: float) -> tuple[float, float]:
    """A point (x, y) of the unrotated patch far towards the end that ``rotate_upright`` with
    ``angle`` puts on top: what another way of standing it up must also put on top."""
    h, w = shape
    inverse = cv2.invertAffineTransform(cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle - 90.0, 1.0))
    x, y = inverse @ np.array([w / 2.0, h / 2.0 - 10.0 * max(h, w), 1.0])
    return float(x), float(y)


def tight(patch: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return patch, mask
    return patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def pad_square(patch: np.ndarray) -> np.ndarray:
    h, w = patch.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=patch.dtype)
    y0, x0 = (side - h) // 2, (side - w) // 2
    out[y0 : y0 + h, x0 : x0 + w] = patch
    return out


def resize(patch: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def isolate(enhanced: np.ndarray, box: Box, cfg: PreprocessConfig, outline: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Masked patch and mask of the chromosome in ``box`` (polarity already canonical).

    ``outline``: where the chromosome is, as the mask network (or the technician) says, over the
    same margin-grown region (0/1). The threshold then only decides the ink inside it, so a
    crossing or touching neighbour's ink stays out while the chromosome keeps its usual edge.
    """
    patch, region = crop_with_margin(enhanced, box, cfg.margin)
    inner = Box(box.xmin - region.xmin, box.ymin - region.ymin, box.xmax - region.xmin, box.ymax - region.ymin)
    binary = otsu_mask(patch, cfg.morph_kernel)
    if outline is not None and outline.shape == binary.shape and outline.any():
        within = binary & outline.astype(np.uint8)
        binary = within if within.sum() >= 0.25 * outline.sum() else outline.astype(np.uint8)
    mask = main_component(binary, inner)
    # the margin gives Otsu some background; pixels beyond box+2 belong to neighbours
    keep = np.zeros_like(mask)
    keep[max(inner.ymin - 2, 0) : inner.ymax + 2, max(inner.xmin - 2, 0) : inner.xmax + 2] = 1
    mask = mask * keep
    return patch * mask, mask


def chromosome_crop(enhanced: np.ndarray, box: Box, cfg: PreprocessConfig, outline: np.ndarray | None = None
                    ) -> tuple[np.ndarray, dict]:
    """Network input for one chromosome plus its absolute measurements."""
    patch, mask = isolate(enhanced, box, cfg, outline)
    box_info = box_measures(enhanced.shape, box, cfg.margin, mask)
    angle = long_axis_angle(mask)
    if cfg.upright:
        patch, mask = rotate_upright(patch, mask, angle)
    patch, mask = tight(patch, mask)
    area = float(mask.sum())
    density = float(patch[mask > 0].mean()) if area else 0.0
    length, width = (float(patch.shape[0]), float(patch.shape[1])) if cfg.upright else (
        float(max(patch.shape)), float(min(patch.shape)))
    crop = resize(pad_square(patch), cfg.size)
    return straighten_crop(crop) if cfg.straighten else crop, {
        "area": area, "length": length, "width": width, "density": density, "angle": angle, **box_info,
    }


def straighten_crop(crop: np.ndarray) -> np.ndarray:
    """A finished crop (chromosome bright on black) with a bent chromosome resampled along its
    centre line, so that its bands lie in one straight column; straight, crossed or too small
    chromosomes come back unchanged. The same size as ``crop``."""
    from .straighten import straighten

    mask = (crop > 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n > 2:  # resizing can leave specks: the centre line is the largest piece's
        mask = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    out = straighten(crop * mask, mask)
    if out is None:
        return crop
    ink, _ = tight(*out)
    return resize(pad_square(ink), crop.shape[0])


def box_measures(shape: tuple[int, ...], box: Box, margin: int, mask: np.ndarray) -> dict:
    """How the isolated mask sits in its box: ``edge_cut``, the mask pixels on the edge of the
    area it may occupy (box + 2, as ``isolate`` keeps) per square root of its area (a chromosome
    inside its box: ~0; a neighbour's piece cut by the box: ~1); ``box_fill``, mask area over box
    area; ``box_area``."""
    h, w = shape[:2]
    region = Box(box.xmin - margin, box.ymin - margin, box.xmax + margin, box.ymax + margin).clipped(w, h)
    y0, x0 = max(box.ymin - region.ymin - 2, 0), max(box.xmin - region.xmin - 2, 0)
    y1, x1 = min(box.ymax - region.ymin + 2, mask.shape[0]), min(box.xmax - region.xmin + 2, mask.shape[1])
    area = float(mask.sum())
    box_area = float(max(box.width, 1) * max(box.height, 1))
    if area == 0 or y1 <= y0 or x1 <= x0:
        return {"edge_cut": 0.0, "box_fill": 0.0, "box_area": box_area}
    keep = mask[y0:y1, x0:x1] > 0
    edge = int(keep[0].sum() + keep[-1].sum() + keep[1:-1, 0].sum() + keep[1:-1, -1].sum())
    return {"edge_cut": edge / np.sqrt(area), "box_fill": area / box_area, "box_area": box_area}


def relative_features(raw: Sequence[dict], cell: np.ndarray | None = None) -> np.ndarray:
    """Size and staining relative to the other chromosomes of the same cell.

    Absolute pixel sizes depend on the microscope and the metaphase's condensation;
    ratios to the cell median do not. Length rank (0 = shortest, 1 = longest) is robust
    to a few bent or overlapping chromosomes. ``cell`` (a mask over ``raw``): the boxes that
    make the cell; the others (the detector's doubtful boxes) are measured against them
    without moving their medians and ranks.
    """
    n = len(raw)
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    ref = np.ones(n, bool) if cell is None or not np.any(cell) else np.asarray(cell, bool)
    cols = {k: np.array([max(r[k], 1e-3) for r in raw], dtype=np.float64) for k in ("area", "length", "width", "density")}
    feats = [np.log(cols[k] / np.median(cols[k][ref])) for k in ("area", "length", "width", "density")]
    lengths = cols["length"][ref]
    rank = np.empty(n)
    rank[ref] = np.argsort(np.argsort(lengths, kind="stable"), kind="stable")
    rank[~ref] = np.searchsorted(np.sort(lengths), cols["length"][~ref])  # where it would stand among them
    feats.append(np.clip(rank / max(len(lengths) - 1, 1), 0.0, 1.0))
    return np.stack(feats, axis=1).astype(np.float32)


def reject_features(raw: Sequence[dict], features: np.ndarray, cell: np.ndarray | None = None) -> np.ndarray:
    """``features`` and, per box, BOX_FEATURE_NAMES (the box area relative to the cell's boxes;
    ``cell`` as in ``relative_features``)."""
    if len(raw) == 0:
        return np.zeros((0, len(FEATURE_NAMES) + len(BOX_FEATURE_NAMES)), dtype=np.float32)
    ref = np.ones(len(raw), bool) if cell is None or not np.any(cell) else np.asarray(cell, bool)
    area = np.array([max(r["box_area"], 1.0) for r in raw], dtype=np.float64)
    box = np.stack([[r["edge_cut"] for r in raw], [r["box_fill"] for r in raw], np.log(area / np.median(area[ref]))], axis=1)
    return np.concatenate([features, box], axis=1).astype(np.float32)


def mask_regions(boxes: Sequence[Box], cfg: PreprocessConfig, width: int, height: int) -> list[Box]:
    """The region each box's mask covers: the box grown by the margin, inside the image."""
    return [Box(b.xmin - cfg.margin, b.ymin - cfg.margin, b.xmax + cfg.margin, b.ymax + cfg.margin).clipped(width, height)
            for b in boxes]


# (enhanced image, boxes, regions) -> one 0/1 mask per box over its region; e.g. the mask network's
Segment = Callable[[np.ndarray, Sequence[Box], Sequence[Box]], Sequence[np.ndarray]]


def preprocess_cell(gray: np.ndarray, boxes: Sequence[Box], cfg: PreprocessConfig, segment: Segment | None = None,
                    outlines: Sequence[np.ndarray | None] | None = None,
                    hand: Sequence[np.ndarray | None] | None = None, cell: np.ndarray | None = None) -> CellCrops:
    """All chromosomes of one image (or one cell of single-chromosome crops, see ``preprocess_crops``).

    ``outlines`` (per box, over ``mask_regions``; None where there is none) or ``segment`` (which
    makes them from the enhanced image) separate each chromosome from the neighbours that touch
    or cross it; they are in ``CellCrops.masks``, and the crops are cut inside them when
    ``cfg.outlines`` says the model was trained so. ``hand``: outlines the technician made (a
    knife split, a join; same layout): they replace the others and always cut the crop, since
    they say what the chromosome is. ``cell``: which boxes make the cell that the features are
    relative to (default all; see ``relative_features``).
    """
    enhanced = enhance_image(gray, cfg)
    n = len(boxes)
    if outlines is None and segment is not None and n:
        outlines = list(segment(enhanced, boxes, mask_regions(boxes, cfg, gray.shape[1], gray.shape[0])))
    cut = list(outlines) if cfg.outlines and outlines is not None else [None] * n
    if hand is not None and any(h is not None for h in hand):
        outlines = list(outlines) if outlines is not None else [None] * n
        for i, h in enumerate(hand):
            if h is not None:
                outlines[i] = cut[i] = h
    images, raw = [], []
    for i, box in enumerate(boxes):
        crop, info = chromosome_crop(enhanced, box, cfg, cut[i])
        images.append(crop)
        raw.append(info)
    stack = np.stack(images) if images else np.zeros((0, cfg.size, cfg.size), np.uint8)
    feats = relative_features(raw, cell)
    crops = CellCrops(stack, feats, raw, list(outlines) if outlines is not None else None, reject_features(raw, feats, cell),
                      enhanced)
    if cfg.companion_crops:
        plain = companion_config(cfg)
        # a crop cut by no outline, or by the technician's (which cuts both), is already the companion's
        same = [cut[i] is None or (hand is not None and hand[i] is not None) for i in range(n)]
        made = [(images[i], raw[i]) if same[i] else chromosome_crop(enhanced, box, plain) for i, box in enumerate(boxes)]
        crops.companion_images = np.stack([m[0] for m in made]) if made else np.zeros_like(stack)
        crops.companion_features = relative_features([m[1] for m in made], cell)
    return crops


def companion_config(cfg: PreprocessConfig) -> PreprocessConfig:
    """The crops a classifier's companion network reads: the same steps, no outline cut."""
    return replace(cfg, outlines=False, companion_crops=False)


def preprocess_crops(crops: Sequence[np.ndarray], cfg: PreprocessConfig) -> CellCrops:
    """One cell given as separate single-chromosome pictures (karyogram/crop datasets).

    Each picture is treated as an image whose only box is the whole picture, so it goes
    through exactly the steps of ``preprocess_cell``; features are relative to the cell.
    The polarity is decided once, on all pictures of the cell together, as for a whole
    image: a tight crop of a long or bent chromosome is mostly chromosome, and deciding
    on it alone turned 8.5% of the G-band karyogram crops the wrong way (their background
    then became the "chromosome", a bright frame; ``scripts/polarity_audit.py``).
    """
    contrasted = [clahe(denoise(gray, cfg), cfg) for gray in crops]
    invert = needs_inversion(np.concatenate([c.ravel() for c in contrasted]), cfg.polarity) if contrasted else False
    images, raw = [], []
    for gray in contrasted:
        enhanced = canonical_polarity(gray, cfg, invert)
        crop, info = chromosome_crop(enhanced, Box(0, 0, gray.shape[1], gray.shape[0]), cfg)
        images.append(crop)
        raw.append(info)
    stack = np.stack(images) if images else np.zeros((0, cfg.size, cfg.size), np.uint8)
    feats = relative_features(raw)
    crops = CellCrops(stack, feats, raw, reject_features=reject_features(raw, feats))
    if cfg.companion_crops:  # a single-chromosome picture has no outline to cut: the same crops
        crops.companion_images, crops.companion_features = stack, feats
    return crops
