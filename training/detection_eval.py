"""Measure the classical detector (``chromodesk.core.detect``) against VOC ground truth.

Usage::

    python -m training.detection_eval --data ../shared/datasets/tseng2023-gband-metaphases \
        --limit 60 --seed 0 --json /tmp/detect.json

Matching is one-to-one (Hungarian on IoU, pairs below ``iou`` discarded): recall is the
share of true boxes matched, precision the share of detections matched. Time is the
median time of ``detect_chromosomes`` alone (decoding the file is not counted), wall
and CPU, with OpenCV limited to ``--threads`` threads (default 1: the target is one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from chromodesk.core.detect import DetectConfig, detect_chromosomes
from chromodesk.core.document import Box
from chromodesk.core.errors import InputError
from chromodesk.core.imaging import SUPPORTED_SUFFIXES, load_gray
from chromodesk.core.voc import read_voc

from .detect_metrics import match_one_to_one


def match(truth: Sequence[Box], found: Sequence[Box], iou: float = 0.5) -> int:
    """Number of one-to-one pairs with IoU >= ``iou`` (maximum total IoU assignment)."""
    as_arr = lambda boxes: np.array([b.as_list() for b in boxes], float).reshape(-1, 4)  # noqa: E731
    return len(match_one_to_one(as_arr(found), as_arr(truth), iou))


def voc_images(root: Path) -> list[Path]:
    images_dir = root / "images"
    ann_dir = root / "annotations"
    if not images_dir.is_dir() or not ann_dir.is_dir():
        raise InputError(root, "not a VOC folder (needs images/ and annotations/)")
    out = [p for p in sorted(images_dir.iterdir())
           if p.suffix.lower() in SUPPORTED_SUFFIXES and (ann_dir / f"{p.stem}.xml").is_file()]
    if not out:
        raise InputError(root, "no images with an annotation file")
    return out


def sample_images(root: Path, limit: int | None, seed: int) -> list[Path]:
    images = voc_images(root)
    if limit is None or limit >= len(images):
        return images
    if limit <= 0:
        raise InputError(None, f"--limit must be positive, got {limit}")
    # a seeded choice over the sorted list: the same sample on every machine
    pick = np.random.default_rng(seed).choice(len(images), size=limit, replace=False)
    return [images[i] for i in sorted(pick)]


def evaluate_detection(root: Path, limit: int | None = None, iou: float = 0.5, seed: int = 0,
                       cfg: DetectConfig = DetectConfig()) -> dict:
    root = Path(root)
    images = sample_images(root, limit, seed)
    n_true = n_found = n_matched = 0
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    per_image = []
    for path in images:
        img = load_gray(path)
        ann = read_voc(root / "annotations" / f"{path.stem}.xml", (img.width, img.height))
        truth = [o.box for o in ann.objects]
        start, cpu = time.perf_counter(), time.process_time()
        found = detect_chromosomes(img.gray, cfg)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu)
        k = match(truth, found, iou)
        n_true += len(truth)
        n_found += len(found)
        n_matched += k
        per_image.append({"image": path.name, "true": len(truth), "found": len(found), "matched": k,
                          "seconds": round(seconds[-1], 4), "cpu_seconds": round(cpu_seconds[-1], 4)})
    n = len(images)
    return {
        "data": str(root),
        "images": n,
        "seed": seed,
        "limit": limit,
        "iou": iou,
        "recall": n_matched / n_true if n_true else 0.0,
        "precision": n_matched / n_found if n_found else 0.0,
        "mean_found": n_found / n,
        "mean_true": n_true / n,
        "median_seconds": float(np.median(seconds)),
        # CPU time of this process: with one OpenCV thread, the one-core cost even on a busy machine
        "median_cpu_seconds": float(np.median(cpu_seconds)),
        "per_image": per_image,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="VOC folder with images/ and annotations/")
    p.add_argument("--limit", type=int, default=None, help="evaluate a seeded sample of N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="OpenCV threads (0 = OpenCV default)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = p.parse_args(argv)
    if args.threads > 0:
        import cv2

        cv2.setNumThreads(args.threads)
    try:
        result = evaluate_detection(args.data, args.limit, args.iou, args.seed)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['images']} images: recall {result['recall']:.3f}  precision {result['precision']:.3f}  "
          f"found/image {result['mean_found']:.1f} (true {result['mean_true']:.1f})  "
          f"median {result['median_seconds'] * 1000:.0f} ms/image wall, {result['median_cpu_seconds'] * 1000:.0f} ms CPU  "
          f"(IoU >= {result['iou']})")
    if args.json is not None:
        from chromodesk.core.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
