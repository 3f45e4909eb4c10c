"""Batched chromosome classification: crops + relative features -> probabilities over CLASSES."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from chromodesk.core.preprocess import CellCrops

from .bundle import DEFAULT_MODEL, BundleMeta, load_bundle
from .network import predict_batch


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU; an explicit request that cannot be met is an error."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA GPU is available")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("--device mps requested but MPS is not available")
    return torch.device(requested)


class Classifier:
    """Loads a bundle once; ``predict`` takes one cell's crops and returns N x 24 probabilities."""

    def __init__(self, bundle: str | Path | None = None, device: str = "auto", batch_size: int = 64,
                 flip_tta: bool = True):
        self.device = choose_device(device)
        if self.device.type == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
            torch.set_num_threads(os.cpu_count() or 1)
        self.model, self.meta = load_bundle(bundle or DEFAULT_MODEL, self.device)
        self.batch_size = batch_size
        # chromosomes lie either way up and either side out: averaging the four flips removes that nuisance
        self.flip_tta = flip_tta and bool(self.meta.training.get("flip_tta", True))

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def preprocess(self):
        return self.meta.preprocess

    @property
    def info(self) -> BundleMeta:
        return self.meta

    @torch.inference_mode()
    def predict_arrays(self, images: np.ndarray, features: np.ndarray) -> np.ndarray:
        if len(images) != len(features):
            raise ValueError(f"{len(images)} crops but {len(features)} feature rows")
        if len(images) == 0:
            return np.zeros((0, len(self.meta.classes)), dtype=np.float32)
        features = np.asarray(features, dtype=np.float32)  # callers may pass float64; the network is float32
        out = []
        for start in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size])).to(self.device)
            f = torch.from_numpy(np.ascontiguousarray(features[start : start + self.batch_size])).to(self.device)
            out.append(predict_batch(self.model, x, f, self.flip_tta).cpu().numpy())
        return np.concatenate(out)

    def predict(self, crops: CellCrops) -> np.ndarray:
        return self.predict_arrays(crops.images, crops.features)
