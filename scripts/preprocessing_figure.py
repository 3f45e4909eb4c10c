"""Before/after picture of the preprocessing on six real chromosomes (docs/preprocessing.png).

    .venv/bin/python scripts/preprocessing_figure.py [IMAGE] [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from chromodesk.core.imaging import load_gray
from chromodesk.core.preprocess import PreprocessConfig, chromosome_crop, crop_with_margin, enhance_image
from chromodesk.core.voc import find_annotation, read_voc

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    image = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "resources" / "samples" / "103201.jpg"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "preprocessing.png"
    cfg = PreprocessConfig()
    img = load_gray(image)
    objects = read_voc(find_annotation(image), (img.width, img.height)).objects
    enhanced = enhance_image(img.gray, cfg)
    picks = [o for o in objects if o.label in ("1", "7", "9", "13", "18", "X")]
    seen, chosen = set(), []
    for o in picks:
        if o.label not in seen:
            seen.add(o.label)
            chosen.append(o)
    tile = 128
    cols = []
    for o in chosen:
        raw, _ = crop_with_margin(img.gray, o.box, cfg.margin)
        scale = tile / max(raw.shape)
        raw = cv2.resize(raw, (max(1, int(raw.shape[1] * scale)), max(1, int(raw.shape[0] * scale))))
        before = np.full((tile, tile), 255, np.uint8)
        before[: raw.shape[0], : raw.shape[1]] = raw
        after, _ = chromosome_crop(enhanced, o.box, cfg)
        after = cv2.resize(after, (tile, tile), interpolation=cv2.INTER_NEAREST)
        col = np.vstack([before, np.full((6, tile), 255, np.uint8), after, np.full((24, tile), 255, np.uint8)])
        cv2.putText(col, f"chr {o.label}", (30, col.shape[0] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1, cv2.LINE_AA)
        cols += [col, np.full((col.shape[0], 8), 255, np.uint8)]
    sheet = np.hstack(cols)
    header = np.full((26, sheet.shape[1]), 255, np.uint8)
    cv2.putText(header, f"top: box crop from {image.name}   bottom: network input ({cfg.size} px, shown enlarged)",
                (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack([header, sheet]))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
