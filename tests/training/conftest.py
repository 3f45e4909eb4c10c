"""A tiny synthetic crop dataset (kind (b): PNGs + labels.csv), built by the tests themselves."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from chromodesk.core.labels import CLASSES


def synthetic_chromosome(class_index: int, rng: np.random.Generator) -> np.ndarray:
    """A dark banded bar on white whose length and band spacing depend on the class."""
    length = 14 + (len(CLASSES) - class_index) + int(rng.integers(0, 2))
    width = 7
    img = np.full((length + 6, width + 6), 235, np.uint8)
    img[3 : 3 + length, 3 : 3 + width] = 110
    step = 3 + class_index % 5
    for y in range(3, 3 + length, step):
        img[y : y + 1, 3 : 3 + width] = 40
    noise = rng.normal(0, 3, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_crops")
    rng = np.random.default_rng(0)
    rows = []
    for case in range(10):
        cell = f"case{case}.1"
        (root / cell).mkdir()
        for k, label in enumerate(CLASSES):
            for h in range(2):
                name = f"{cell}/{label}_{h}.png"
                cv2.imwrite(str(root / name), synthetic_chromosome(k, rng))
                rows.append({"path": name, "label": label, "cell": cell, "case": f"case{case}"})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "cell", "case"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every training test runs torch on one thread (see ``one_torch_thread``)."""
