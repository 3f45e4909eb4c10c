"""Mask training data: real hand-drawn polygons (Q-band) and made crossings (G-band).

- ``polygon_images``: the BioImLab metaphases with one polygon per chromosome. Crossing
  chromosomes are drawn as overlapping polygons, so each polygon is the truth for its box
  even where a neighbour lies on top. Split by cell.
- ``gband_images``: Tseng metaphases; only *isolated* chromosomes (no other box within a
  few pixels) get a mask, by the preprocessing's own threshold + largest component, which is
  exact when nothing touches. Training then pastes other isolated chromosomes, turned at
  random, across or against them: crossings and touchings whose masks are known.

Every picture is ``preprocess.enhance_image``'s output (denoised, contrast-limited, chromosome
bright on black), as the product's segmentation sees it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from chromodesk.core.document import Box
from chromodesk.core.imaging import load_gray
from chromodesk.core.mask_input import MASK_SIZE, WINDOW_PAD, cut_window, box_channel, mask_window, window_target
from chromodesk.core.preprocess import PreprocessConfig, crop_with_margin, enhance_image, isolate
from chromodesk.core.voc import find_annotation, read_voc

from .data import _voc_images, case_of_image, split_groups

TOUCH_GAP = 2  # pixels: a chromosome within this distance of another one "touches" it


@dataclass
class MaskImage:
    name: str
    group: str  # the cell (polygon set) or case (Tseng): the unit of the split
    enhanced: np.ndarray  # uint8 H x W, chromosome bright
    boxes: list[Box]  # one per known mask
    masks: list[np.ndarray]  # uint8 0/1 over each box
    touching: list[bool] = field(default_factory=list)  # another chromosome within TOUCH_GAP


def tight_box(mask: np.ndarray, x0: int = 0, y0: int = 0) -> Box | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return Box(x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)


def _touching(full_masks: list[tuple[Box, np.ndarray]], shape: tuple[int, int]) -> list[bool]:
    """Whether each mask, grown by TOUCH_GAP, meets another one."""
    count = np.zeros(shape, np.int32)
    for b, m in full_masks:
        count[b.ymin : b.ymax, b.xmin : b.xmax] += m
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * TOUCH_GAP + 1, 2 * TOUCH_GAP + 1))
    out = []
    h, w = shape
    for b, m in full_masks:
        g = Box(b.xmin - TOUCH_GAP, b.ymin - TOUCH_GAP, b.xmax + TOUCH_GAP, b.ymax + TOUCH_GAP).clipped(w, h)
        own = np.zeros((g.height, g.width), np.int32)
        own[b.ymin - g.ymin : b.ymax - g.ymin, b.xmin - g.xmin : b.xmax - g.xmin] = m
        grown = cv2.dilate(own.astype(np.uint8), k) > 0
        others = count[g.ymin : g.ymax, g.xmin : g.xmax] - own
        out.append(bool((others[grown] > 0).any()))
    return out


def load_polygon_image(image_path: Path, polygon_path: Path, cfg: PreprocessConfig) -> MaskImage:
    data = json.loads(polygon_path.read_text())
    gray = load_gray(image_path).gray
    h, w = gray.shape
    boxes, masks = [], []
    for obj in data["objects"]:
        pts = np.round(np.asarray(obj["points"], np.float64)).astype(np.int32)
        if len(pts) < 3:
            continue
        x0, y0 = max(int(pts[:, 0].min()) - 1, 0), max(int(pts[:, 1].min()) - 1, 0)
        x1, y1 = min(int(pts[:, 0].max()) + 2, w), min(int(pts[:, 1].max()) + 2, h)
        canvas = np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)), np.uint8)
        cv2.fillPoly(canvas, [pts - [x0, y0]], 1)
        box = tight_box(canvas, x0, y0)
        if box is None:
            continue
        boxes.append(box)
        masks.append(canvas[box.ymin - y0 : box.ymax - y0, box.xmin - x0 : box.xmax - x0].copy())
    touching = _touching(list(zip(boxes, masks)), (h, w))
    return MaskImage(image_path.stem, str(data.get("cell", image_path.stem)), enhance_image(gray, cfg), boxes, masks,
                     touching)


def polygon_images(root: str | Path, cfg: PreprocessConfig = PreprocessConfig(), quiet: bool = False) -> list[MaskImage]:
    root = Path(root)
    pairs = [(p, root / "polygons" / f"{p.stem}.json") for p in sorted((root / "images").glob("*.png"))]
    pairs = [(i, j) for i, j in pairs if j.is_file()]
    return [load_polygon_image(i, j, cfg) for i, j in tqdm(pairs, desc="polygon images", disable=quiet)]


def load_gband_image(image_path: Path, cfg: PreprocessConfig, gap: int = 4) -> MaskImage | None:
    xml = find_annotation(image_path)
    if xml is None:
        return None
    img = load_gray(image_path)
    ann = read_voc(xml, (img.width, img.height))
    all_boxes = [o.box for o in ann.objects if not o.box.is_empty()]
    enhanced = enhance_image(img.gray, cfg)
    boxes, masks = [], []
    for i, b in enumerate(all_boxes):
        grown = Box(b.xmin - gap, b.ymin - gap, b.xmax + gap, b.ymax + gap)
        if any(j != i and grown.iou(o) > 0 for j, o in enumerate(all_boxes)):
            continue
        _, mask = isolate(enhanced, b, cfg)
        _, region = crop_with_margin(enhanced, b, cfg.margin)
        tb = tight_box(mask, region.xmin, region.ymin)
        if tb is None or mask.sum() < 30:
            continue
        boxes.append(tb)
        masks.append(mask[tb.ymin - region.ymin : tb.ymax - region.ymin, tb.xmin - region.xmin : tb.xmax - region.xmin].copy())
    return MaskImage(image_path.stem, case_of_image(image_path.stem), enhanced, boxes, masks, [False] * len(boxes))


def gband_images(root: str | Path, split: dict, parts: dict[str, int], cfg: PreprocessConfig = PreprocessConfig(),
                 seed: int = 0, quiet: bool = False) -> dict[str, list[MaskImage]]:
    """Up to ``parts[part]`` images of each split part (keys ``source/case`` as the classifier's split)."""
    root = Path(root)
    images = _voc_images(root)
    random.Random(seed).shuffle(images)
    out: dict[str, list[MaskImage]] = {k: [] for k in parts}
    for path in tqdm(images, desc="G-band images", disable=quiet):
        part = split.get(f"{root.name}/{case_of_image(path.stem)}")
        if part not in out or len(out[part]) >= parts[part]:
            continue
        im = load_gband_image(path, cfg)
        if im is not None and im.boxes:
            out[part].append(im)
        if all(len(out[k]) >= n for k, n in parts.items()):
            break
    return out


def split_by_group(images: list[MaskImage], seed: int = 0) -> dict[str, list[MaskImage]]:
    assignment = split_groups(np.array([im.group for im in images]), seed)
    return {part: [im for im in images if assignment[im.group] == part] for part in ("train", "val", "test")}


# -- samples ------------------------------------------------------------------------------
def jitter_box(box: Box, rng: np.random.Generator, amount: float) -> Box:
    """The box as another annotator (or the detector) might draw it."""
    if amount <= 0:
        return box
    s = amount * max(box.width, box.height)
    d = np.round(rng.normal(0, s, 4)).astype(int)
    out = Box(box.xmin + d[0], box.ymin + d[1], box.xmax + d[2], box.ymax + d[3])
    return out if out.width >= 3 and out.height >= 3 else box


def _paste(canvas: np.ndarray, sprite: np.ndarray, cx: float, cy: float) -> None:
    """Add a chromosome's ink at centre (cx, cy), overlap brighter (more stain), in place."""
    sh, sw = sprite.shape
    ox, oy = int(round(cx - sw / 2)), int(round(cy - sh / 2))
    h, w = canvas.shape
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + sw, w), min(oy + sh, h)
    if x1 <= x0 or y1 <= y0:
        return
    p = sprite[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = np.minimum(np.maximum(region, p) + 0.5 * np.minimum(region, p), 255.0)


def rotated_sprite(im: MaskImage, k: int, angle: float) -> np.ndarray:
    b, m = im.boxes[k], im.masks[k]
    pix = im.enhanced[b.ymin : b.ymax, b.xmin : b.xmax].astype(np.float32) * m
    h, w = m.shape
    side = int(np.ceil(np.hypot(h, w))) + 2
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rot[:, 2] += (side - w) / 2, (side - h) / 2
    return cv2.warpAffine(pix, rot, (side, side), flags=cv2.INTER_LINEAR)


def composite(im: MaskImage, k: int, rng: np.random.Generator, partners=(), jitter: float = 0.0,
              scale: tuple[float, float] = (1.6, 1.6)) -> tuple[np.ndarray, Box, Box]:
    """The window around chromosome ``k`` of ``im`` (float32 pixels, image scale) with ``partners``
    pasted across or against it; the window and the box as asked (jittered)."""
    box = im.boxes[k]
    asked = jitter_box(box, rng, jitter)
    window = mask_window(asked, float(rng.uniform(*scale)))
    pixels = cut_window(im.enhanced, window).astype(np.float32)
    if partners:
        ys, xs = np.nonzero(im.masks[k])
        for pim, pk in partners:
            j = int(rng.integers(len(xs)))
            reach = 0.5 * max(pim.boxes[pk].width, pim.boxes[pk].height)
            cx = box.xmin + xs[j] - window.xmin + rng.normal(0, 0.35 * reach)
            cy = box.ymin + ys[j] - window.ymin + rng.normal(0, 0.35 * reach)
            _paste(pixels, rotated_sprite(pim, pk, float(rng.uniform(0, 360))), cx, cy)
    return pixels, window, asked


def sample(im: MaskImage, k: int, rng: np.random.Generator, partners=(), jitter: float = 0.0,
           scale: tuple[float, float] = (1.6, 1.6), size: int = MASK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(input (2, s, s) float32, target (s, s) float32) for chromosome ``k`` of ``im``."""
    pixels, window, asked = composite(im, k, rng, partners, jitter, scale)
    interp = cv2.INTER_AREA if window.width > size else cv2.INTER_LINEAR
    grey = cv2.resize(pixels, (size, size), interpolation=interp) / 255.0
    x = np.stack([grey, box_channel(asked, window, size)]).astype(np.float32)
    return x, window_target(im.masks[k], im.boxes[k], window, size)


def dihedral(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(4))
    x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k)
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


__all__ = ["MaskImage", "polygon_images", "gband_images", "split_by_group", "sample", "dihedral", "jitter_box",
           "tight_box", "TOUCH_GAP", "WINDOW_PAD"]
