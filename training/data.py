"""Training data sources, preprocessed once through ``chromodesk.core.preprocess`` and cached.

Kinds of source (``--data`` takes several, ``PATH[:WEIGHT]``):
(a) a VOC metaphase folder: ``images/`` + ``annotations/`` (also what the app exports
    after review, so corrections become training data);
(b) a crop folder with ``labels.csv`` (``path,label,cell[,case]``).
Crops are cached on disk as ``.npz`` keyed by the source path, its file list and the
preprocessing config digest, so epochs never repeat the denoising.
"""

from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tqdm import tqdm

from chromodesk.core.errors import InputError
from chromodesk.core.imaging import SUPPORTED_SUFFIXES, load_gray
from chromodesk.core.labels import CLASS_INDEX, normalize_label
from chromodesk.core.preprocess import PreprocessConfig, companion_config, preprocess_cell, preprocess_crops, straighten_crop
from chromodesk.core.voc import find_annotation, read_voc

CACHE_DIR = Path(os.environ.get("CHROMODESK_CACHE", Path.home() / ".cache" / "chromodesk"))


@dataclass
class CropSet:
    """Preprocessed crops of one or more sources, one row per chromosome."""

    images: np.ndarray  # uint8 N x S x S
    features: np.ndarray  # float32 N x F
    labels: np.ndarray  # int64 N, index into CLASSES
    cells: np.ndarray  # str N
    cases: np.ndarray  # str N
    source: np.ndarray  # str N (source name, for per-source reports)
    # a classifier companion's crops of the same chromosomes (``PreprocessConfig.companion_crops``)
    companion_images: np.ndarray | None = None
    companion_features: np.ndarray | None = None

    FIELDS = ("images", "features", "labels", "cells", "cases", "source")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def companion(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.companion_images is None else (self.companion_images, self.companion_features)

    def subset(self, index) -> "CropSet":
        other = {} if self.companion_images is None else {
            "companion_images": self.companion_images[index], "companion_features": self.companion_features[index]}
        return CropSet(*(getattr(self, f)[index] for f in self.FIELDS), **other)

    @staticmethod
    def concat(parts: list["CropSet"]) -> "CropSet":
        joined = CropSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in CropSet.FIELDS))
        if parts and all(p.companion_images is not None for p in parts):
            joined.companion_images = np.concatenate([p.companion_images for p in parts])
            joined.companion_features = np.concatenate([p.companion_features for p in parts])
        return joined


def source_kind(path: Path) -> str:
    if (path / "labels.csv").is_file():
        return "crops"
    if (path / "images").is_dir() or any(p.suffix.lower() in SUPPORTED_SUFFIXES for p in path.glob("*")):
        return "voc"
    raise InputError(path, "not a data source: expected images/ + annotations/ (VOC) or labels.csv (crops)")


def case_of_image(stem: str) -> str:
    """Tseng 2023 naming: the case is the image name without its last digit (cell number)."""
    return stem[:-1] if len(stem) > 1 and stem.isdigit() else stem


def _voc_images(root: Path) -> list[Path]:
    folder = root / "images" if (root / "images").is_dir() else root
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES)


def _one_voc_image(args) -> tuple | None:
    image_path, cfg = args
    xml = find_annotation(image_path)
    if xml is None:
        return None
    img = load_gray(image_path)
    ann = read_voc(xml, (img.width, img.height))
    objs = [o for o in ann.objects if o.label is not None]
    if not objs:
        return None
    crops = preprocess_cell(img.gray, [o.box for o in ann.objects], cfg, segment=_segment(cfg))  # features relative to all objects
    keep = [i for i, o in enumerate(ann.objects) if o.label is not None]
    return crops.images[keep], crops.features[keep], np.array([CLASS_INDEX[o.label] for o in objs]), image_path.stem


_SEGMENTER = {}


def _segment(cfg: PreprocessConfig):
    """The shipped mask network's ``masks`` when crops are cut inside outlines (loaded once per
    worker process); None otherwise."""
    if not cfg.outlines:
        return None
    if "net" not in _SEGMENTER:
        import torch

        from chromodesk.inference.segmenter import Segmenter

        torch.set_num_threads(1)  # one per worker process: the pool already fills the cores
        _SEGMENTER["net"] = Segmenter(device="cpu")
    return _SEGMENTER["net"].masks


def _one_crop_cell(args) -> tuple:
    root, cell, rows, cfg = args
    pictures = [load_gray(root / r["path"]).gray for r in rows]
    crops = preprocess_crops(pictures, cfg)
    labels = np.array([CLASS_INDEX[normalize_label(r["label"])] for r in rows])
    return crops.images, crops.features, labels, cell, rows[0].get("case") or cell


def read_labels_csv(root: Path) -> list[dict]:
    """Rows of a crop folder's ``labels.csv`` (``path,label,cell[,case]``)."""
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"path", "label", "cell"} - set(rows[0].keys() if rows else [])
    if missing:
        raise InputError(root / "labels.csv", f"missing columns: {', '.join(sorted(missing))}")
    return rows


def labelled_rows_by_cell(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows with a known label, grouped by cell in file order (a cell is preprocessed together)."""
    by_cell: dict[str, list[dict]] = {}
    for r in rows:
        if normalize_label(r["label"]) is not None:
            by_cell.setdefault(r["cell"], []).append(r)
    return by_cell


def _fingerprint(root: Path, names: list[str], cfg: PreprocessConfig) -> str:
    h = hashlib.sha256(str(root.resolve()).encode())
    if cfg.outlines:  # crops cut by another mask network are other crops
        from chromodesk.inference.segmenter import DEFAULT_SEGMENTER

        weights = DEFAULT_SEGMENTER.with_suffix(".safetensors")
        if not weights.is_file():
            raise InputError(DEFAULT_SEGMENTER, "crops cut by outlines (--outlines) need the mask network bundle")
        h.update(weights.read_bytes()[-4096:])  # the tail of the weights: enough to tell two networks apart
    for n in names:
        h.update(n.encode())
    return f"{root.name}-{cfg.digest()}-{h.hexdigest()[:10]}"


def load_source(path: str | Path, cfg: PreprocessConfig, workers: int | None = None, progress=None) -> CropSet:
    """Preprocessed crops of one source, from the cache when it is there."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "data source folder not found")
    kind = source_kind(root)
    if kind == "voc":
        images = _voc_images(root)
        key = _fingerprint(root, [p.name for p in images], cfg)
    else:
        rows = read_labels_csv(root)
        key = _fingerprint(root, [r["path"] + r["label"] for r in rows], cfg)
    cache = CACHE_DIR / "crops" / f"{key}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return CropSet(z["images"], z["features"], z["labels"], z["cells"], z["cases"], z["source"])
    if cfg.straighten:  # straightening acts on the finished crop alone: reuse the crops made without it
        data = load_source(root, replace(cfg, straighten=False), workers, progress)
        data = CropSet(np.stack([straighten_crop(c) for c in data.images]) if len(data) else data.images,
                       data.features, data.labels, data.cells, data.cases, data.source)
        _save(cache, data)
        return data

    jobs = [(p, cfg) for p in images] if kind == "voc" else \
        [(root, cell, rs, cfg) for cell, rs in labelled_rows_by_cell(rows).items()]
    data = _preprocess(root, kind, jobs, workers, progress)
    _save(cache, data)
    return data


def _preprocess(root: Path, kind: str, jobs: list[tuple], workers: int | None, progress) -> CropSet:
    """Run the preprocessing jobs of one source (``_one_voc_image`` or ``_one_crop_cell``) in a process pool."""
    workers = workers or max(1, (os.cpu_count() or 1))
    fn = _one_voc_image if kind == "voc" else _one_crop_cell
    parts = []
    with ProcessPoolExecutor(workers) as pool:
        for i, out in enumerate(pool.map(fn, jobs, chunksize=4)):
            if progress:
                progress(i + 1, len(jobs))
            if out is None:
                continue
            if kind == "voc":
                imgs, feats, labels, stem = out
                cell, case = stem, case_of_image(stem)
            else:
                imgs, feats, labels, cell, case = out
            n = len(labels)
            parts.append(CropSet(imgs, feats, labels.astype(np.int64), np.array([cell] * n), np.array([case] * n),
                                 np.array([root.name] * n)))
    if not parts:
        raise InputError(root, "no labelled chromosomes found")
    return CropSet.concat(parts)


def load_part(values: list[str], pre: PreprocessConfig, split: dict[str, str], part: str,
              workers: int | None = None) -> CropSet:
    """The chromosomes of one part of a case split (e.g. ``"val"``), preprocessed now and not
    cached: a quick look at a new preprocessing or input size without preprocessing every image
    of every source first. With ``pre.companion_crops`` the companion's crops come along."""
    if pre.companion_crops:
        data = load_part(values, replace(pre, companion_crops=False), split, part, workers)
        other = load_part(values, companion_config(pre), split, part, workers)
        _check_aligned(data, other)
        data.companion_images, data.companion_features = other.images, other.features
        return data
    parts = []
    for root, _ in _parse_sources(values):
        if source_kind(root) == "voc":
            jobs = [(p, pre) for p in _voc_images(root) if split.get(f"{root.name}/{case_of_image(p.stem)}") == part]
            kind = "voc"
        else:
            jobs = [(root, cell, rs, pre) for cell, rs in labelled_rows_by_cell(read_labels_csv(root)).items()
                    if split.get(f"{root.name}/{rs[0].get('case') or cell}") == part]
            kind = "crops"
        if jobs:
            parts.append(_preprocess(root, kind, jobs, workers, None))
    if not parts:
        raise InputError(None, f"no chromosomes of the {part!r} cases in {', '.join(values)}")
    return CropSet.concat(parts)


def _save(cache: Path, data: CropSet) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=data.images, features=data.features, labels=data.labels, cells=data.cells,
             cases=data.cases, source=data.source)
    os.replace(tmp, cache)


def _parse_sources(values: list[str]) -> list[tuple[Path, float]]:
    out = []
    for v in values:
        path, _, weight = v.rpartition(":") if ":" in v and v.rsplit(":", 1)[1].replace(".", "", 1).isdigit() else (v, "", "")
        out.append((Path(path), float(weight) if weight else 1.0))
    return out


def load_data(values: list[str], pre: PreprocessConfig, quiet: bool = False) -> tuple[CropSet, dict[str, float]]:
    """Several ``PATH[:WEIGHT]`` sources as one CropSet, plus the per-source sampling weights.
    With ``pre.companion_crops`` the companion's crops come along (each config cached on its own)."""
    if pre.companion_crops:
        data, weights = load_data(values, replace(pre, companion_crops=False), quiet)
        other, _ = load_data(values, companion_config(pre), quiet)
        _check_aligned(data, other)
        data.companion_images, data.companion_features = other.images, other.features
        return data, weights
    parts, weights = [], {}
    for path, weight in _parse_sources(values):
        bar = tqdm(total=0, desc=f"preprocessing {path.name}", unit="item", disable=quiet, leave=False)

        def progress(i, n, bar=bar):
            bar.total = n
            bar.n = i
            bar.refresh()

        parts.append(load_source(path, pre, progress=progress))
        bar.close()
        weights[path.name] = weight
    return CropSet.concat(parts), weights


def _check_aligned(data: CropSet, other: CropSet) -> None:
    if not all(np.array_equal(getattr(data, f), getattr(other, f)) for f in ("labels", "cells", "source")):
        raise InputError(None, "the companion's crops do not list the same chromosomes as the model's")


def cell_groups(sources: np.ndarray, cells: np.ndarray) -> list[np.ndarray]:
    """Row indices of each cell (a cell name is only unique within its source)."""
    keys = np.char.add(np.char.add(sources.astype(str), "/"), cells.astype(str))
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1) if len(order) else []


# -- splits --------------------------------------------------------------------------
def split_groups(groups: np.ndarray, seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> dict[str, str]:
    """Assign each case (or cell) to train/val/test: seeded, never by single chromosome."""
    unique = np.array(sorted(set(groups.tolist())))
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    n = len(unique)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    out = {}
    for i, g in enumerate(unique):
        out[str(g)] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return out


def split_index(data: CropSet, assignment: dict[str, str], part: str) -> np.ndarray:
    keys = np.array([f"{s}/{c}" for s, c in zip(data.source, data.cases)])
    return np.array([assignment.get(k) == part for k in keys])


def make_split(data: CropSet, seed: int = 0) -> dict[str, str]:
    """Split per source, by case: keys are ``source/case``."""
    out = {}
    for src in sorted(set(data.source.tolist())):
        sel = data.source == src
        for case, part in split_groups(data.cases[sel], seed).items():
            out[f"{src}/{case}"] = part
    return out
