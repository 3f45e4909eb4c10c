"""Detector training data: whole metaphases with their VOC boxes, at the detector's scale.

Every image is loaded once, turned into what the detector sees
(``core.detector_input``) and cached as float16 under ``~/.cache/chromodesk``. Training
samples are random patches with flips, quarter turns, a random scale, stain and noise
changes, and **pasted crossings**: isolated chromosomes of the same image (no other box
near them; their mask is exact by threshold) pasted at random angles across others, so
that the network sees many more crossings, with known boxes, than the data holds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from chromodesk.core.detector_input import OUTPUT_STRIDE, detector_input
from chromodesk.core.imaging import load_gray
from chromodesk.core.voc import find_annotation, read_voc

from .data import _voc_images, case_of_image

CACHE_REVISION = "1"


@dataclass
class DetectImage:
    name: str  # image stem
    case: str
    x: np.ndarray  # float16 (H, W) detector input
    boxes: np.ndarray  # float32 (n, 4) x0, y0, x1, y1 in detector-input pixels
    scale: float  # detector-input pixels per image pixel


@dataclass
class DetectSet:
    source: str
    images: list[DetectImage] = field(default_factory=list)

    def part(self, split: dict[str, str], name: str) -> list[DetectImage]:
        return [im for im in self.images if split.get(f"{self.source}/{im.case}") == name]


def _load_one(path: Path, scale: float) -> DetectImage | None:
    xml = find_annotation(path)
    if xml is None:
        return None
    img = load_gray(path)
    ann = read_voc(xml, (img.width, img.height))
    boxes = np.array([o.box.as_list() for o in ann.objects if not o.box.is_empty()], np.float32).reshape(-1, 4)
    x = detector_input(img.gray, scale)
    return DetectImage(path.stem, case_of_image(path.stem), x.astype(np.float16), boxes * scale, scale)


def load_detect_source(path: str | Path, scale: float, quiet: bool = False) -> DetectSet:
    root = Path(path)
    paths = _voc_images(root)
    key = hashlib.sha256(f"{root.resolve()}|{scale}|{CACHE_REVISION}|{len(paths)}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("CHROMODESK_CACHE", Path.home() / ".cache" / "chromodesk")) / f"detect-{root.name}-{key}.npz"
    out = DetectSet(root.name)
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        for i, name in enumerate(z["names"]):
            out.images.append(DetectImage(str(name), str(z["cases"][i]), z[f"x{i}"], z[f"b{i}"], float(z["scales"][i])))
        return out
    for p in tqdm(paths, desc=f"loading {root.name}", unit="image", disable=quiet, mininterval=2.0):
        im = _load_one(p, scale)
        if im is not None:
            out.images.append(im)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"names": np.array([im.name for im in out.images]), "cases": np.array([im.case for im in out.images]),
              "scales": np.array([im.scale for im in out.images])}
    for i, im in enumerate(out.images):
        arrays[f"x{i}"], arrays[f"b{i}"] = im.x, im.boxes
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    return out


# -- isolated chromosomes, for pasted crossings -------------------------------------------
@dataclass
class Sprite:
    pixels: np.ndarray  # float32 (h, w), zero outside the mask
    mask: np.ndarray  # bool (h, w)
    margin: float  # how far the annotator's box reached beyond the mask, in pixels


def isolated_sprites(im: DetectImage, gap: float = 3.0, level: float = 0.35) -> list[Sprite]:
    """Chromosomes whose box (grown by ``gap``) touches no other box, cut out by threshold."""
    b = im.boxes
    out = []
    for i, (x0, y0, x1, y1) in enumerate(b):
        others = np.delete(b, i, 0)
        near = ((others[:, 0] < x1 + gap) & (others[:, 2] > x0 - gap) & (others[:, 1] < y1 + gap) & (others[:, 3] > y0 - gap))
        if near.any():
            continue
        ix0, iy0, ix1, iy1 = int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))
        patch = im.x[iy0:iy1, ix0:ix1].astype(np.float32)
        if patch.size < 16:
            continue
        mask = patch > level
        n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if n < 2:
            continue
        mask = lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        ys, xs = np.nonzero(mask)
        if len(xs) < 20:
            continue
        margin = float(np.mean([xs.min(), ys.min(), patch.shape[1] - 1 - xs.max(), patch.shape[0] - 1 - ys.max()]))
        out.append(Sprite(np.where(mask, patch, 0).astype(np.float32), mask, max(0.0, margin)))
    return out


def _rotated(sprite: Sprite, angle: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = sprite.mask.shape
    side = int(np.ceil(np.hypot(h, w))) + 2
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[:, 2] += (side - w) / 2, (side - h) / 2
    pix, mask = sprite.pixels, sprite.mask.astype(np.float32)
    if rng.random() < 0.5:
        pix, mask = pix[:, ::-1], mask[:, ::-1]
    pix = cv2.warpAffine(np.ascontiguousarray(pix), m, (side, side), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (side, side), flags=cv2.INTER_LINEAR) > 0.5
    return pix, mask


def paste_crossing(x: np.ndarray, boxes: list[list[float]], sprite: Sprite, rng: np.random.Generator,
                   centre: bool = False) -> bool:
    """Paste ``sprite`` (rotated at random) across a chromosome of ``x`` (or anywhere when there
    is none); the overlap is darker stain, i.e. brighter here. Adds its box. In place."""
    pix, mask = _rotated(sprite, float(rng.uniform(0, 360)), rng)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return False
    h, w = x.shape
    if boxes and (centre or rng.random() < 0.85):
        bx = boxes[int(rng.integers(len(boxes)))]
        spread = 16 if centre else 4  # ``centre``: the two centres within a cell or so, a shared peak
        cx = (bx[0] + bx[2]) / 2 + rng.normal(0, (bx[2] - bx[0]) / spread)
        cy = (bx[1] + bx[3]) / 2 + rng.normal(0, (bx[3] - bx[1]) / spread)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    mx, my = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    ox, oy = int(round(cx - mx)), int(round(cy - my))
    sh, sw = mask.shape
    # the part of the sprite inside the patch
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(w, ox + sw), min(h, oy + sh)
    if x1 <= x0 or y1 <= y0:
        return False
    m = mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    visible = m.sum() / mask.sum()
    if visible < 0.999:  # a chromosome cut by the patch edge would teach truncated boxes
        return False
    p = pix[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    region = x[y0:y1, x0:x1]
    both = np.maximum(region, 0)
    region[m] = (np.maximum(region, p) + 0.5 * np.minimum(both, p))[m]
    g = sprite.margin
    boxes.append([ox + xs.min() - g, oy + ys.min() - g, ox + xs.max() + 1 + g, oy + ys.max() + 1 + g])
    return True


# -- one training sample -------------------------------------------------------------------
@dataclass
class DetectAugment:
    patch: int = 256
    scale_range: tuple[float, float] = (0.8, 1.25)
    paste_prob: float = 0.5
    paste_max: int = 3
    centre_paste: float = 0.0  # share of pastes centred near a chromosome's centre (twins to learn from)
    gain_range: tuple[float, float] = (0.7, 1.4)
    noise_max: float = 0.08
    enabled: bool = True


def sample_patch(im: DetectImage, sprites: list[Sprite], cfg: DetectAugment, rng: np.random.Generator):
    """A random training patch and its boxes (patch pixels), plus boxes cut by the patch edge
    (their neighbourhood is not penalised: neither a hit nor a miss is taught there)."""
    x = im.x.astype(np.float32)
    boxes = im.boxes.copy()
    if cfg.enabled:
        s = float(np.exp(rng.uniform(*np.log(cfg.scale_range))))
        if abs(s - 1) > 1e-3:
            x = cv2.resize(x, (max(1, round(x.shape[1] * s)), max(1, round(x.shape[0] * s))), interpolation=cv2.INTER_LINEAR)
            boxes = boxes * s
        k = int(rng.integers(4))
        for _ in range(k):  # quarter turns counter-clockwise: (x, y) -> (y, W - x)
            w = x.shape[1]
            x = np.rot90(x)
            boxes = np.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], 1)
        if rng.random() < 0.5:
            w = x.shape[1]
            x = x[:, ::-1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
    p = cfg.patch
    h, w = x.shape
    canvas = np.zeros((max(h, p), max(w, p)), np.float32)
    canvas[:h, :w] = x
    y0 = int(rng.integers(0, canvas.shape[0] - p + 1))
    x0 = int(rng.integers(0, canvas.shape[1] - p + 1))
    patch = canvas[y0 : y0 + p, x0 : x0 + p].copy()
    boxes = boxes - np.array([x0, y0, x0, y0], np.float32)
    clipped = np.clip(boxes, 0, p)
    area = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-3), 1)
    vis = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), 1) / area
    keep = vis >= 0.999
    cut = (vis > 0) & ~keep
    kept = clipped[keep].tolist()
    if cfg.enabled and sprites and rng.random() < cfg.paste_prob:
        for _ in range(int(rng.integers(1, cfg.paste_max + 1))):
            paste_crossing(patch, kept, sprites[int(rng.integers(len(sprites)))], rng,
                           centre=bool(rng.random() < cfg.centre_paste))
    if cfg.enabled:
        patch = patch * rng.uniform(*cfg.gain_range) + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.3:
            patch = cv2.GaussianBlur(patch, (3, 3), rng.uniform(0.3, 1.0))
        patch = patch + rng.normal(0, rng.uniform(0, cfg.noise_max), patch.shape).astype(np.float32)
    return patch.astype(np.float32), np.array(kept, np.float32).reshape(-1, 4), clipped[cut]


# -- CenterNet targets ---------------------------------------------------------------------
def _gaussian(shape, cx, cy, sx, sy):
    ys, xs = np.ogrid[: shape[0], : shape[1]]
    return np.exp(-((xs - cx) ** 2) / (2 * sx * sx) - ((ys - cy) ** 2) / (2 * sy * sy))


def make_targets(boxes: np.ndarray, ignore: np.ndarray, size: tuple[int, int], stride: int = OUTPUT_STRIDE,
                 alpha: float = 0.54, twin: bool = False):
    """Heatmap (elliptical Gaussians as in TTFNet, peak 1 at each centre cell), log box size and
    centre offset at the centre cells, a regression mask, and a weight map that is zero around
    boxes cut by the patch edge. With ``twin`` also (5, h, w) twin targets: a box whose centre
    cell lies within one cell of a larger box's (the 3x3 peak would swallow it: a crossing) is
    that peak's twin (presence 1, its log size, its offset from that cell) instead of a peak."""
    oh, ow = size[0] // stride, size[1] // stride
    heat = np.zeros((oh, ow), np.float32)
    weight = np.ones((oh, ow), np.float32)
    reg = np.zeros((4, oh, ow), np.float32)
    reg_mask = np.zeros((oh, ow), np.float32)
    twins = np.zeros((5, oh, ow), np.float32)
    for x0, y0, x1, y1 in ignore:
        weight[int(y0 // stride) : int(np.ceil(y1 / stride)), int(x0 // stride) : int(np.ceil(x1 / stride))] = 0
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), 1), kind="stable") if twin else range(len(boxes))
    peaks: list[tuple[int, int]] = []
    for k in order:
        x0, y0, x1, y1 = boxes[k]
        bw, bh = (x1 - x0) / stride, (y1 - y0) / stride
        if bw <= 0 or bh <= 0:
            continue
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
        ix, iy = min(int(cx), ow - 1), min(int(cy), oh - 1)
        if twin:
            host = next(((px, py) for px, py in peaks if abs(px - ix) <= 1 and abs(py - iy) <= 1 and twins[0, py, px] == 0), None)
            if host is not None:
                px, py = host
                twins[:, py, px] = 1.0, np.log(bw), np.log(bh), cx - px, cy - py
                continue
            peaks.append((ix, iy))
        g = _gaussian((oh, ow), ix, iy, max(alpha * bw / 6, 0.5), max(alpha * bh / 6, 0.5))
        np.maximum(heat, g, out=heat)
        heat[iy, ix] = 1.0
        reg[:, iy, ix] = np.log(bw), np.log(bh), cx - ix, cy - iy
        reg_mask[iy, ix] = 1.0
    return (heat, weight, reg, reg_mask, twins) if twin else (heat, weight, reg, reg_mask)
