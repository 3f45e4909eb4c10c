"""Batched chromosome classification: crops + relative features -> probabilities over CLASSES.

Two stages: the crop network looks at each chromosome on its own (``predict_arrays``,
``predict_each``); the bundle's cell-context stage, when it has one, then re-scores all
chromosomes of one cell together (``in_context``). ``predict`` does both for one cell.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from chromodesk.core.karyotype import logit, rescue_rejected
from chromodesk.core.preprocess import CellCrops

from .bundle import DEFAULT_MODEL, BundleMeta, load_bundle, load_companion
from .cell_context import assignment_onehot
from .network import predict_batch, predict_reject
from .orientation import find_orienter
from .segmenter import find_segmenter


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
    """Loads a bundle once; ``predict`` takes one cell's crops and returns N x 24 probabilities.

    ``orienter``: the p-arm orientation network that reads the same crops (``orientation``: True
    for the shipped one when installed, a bundle path, or False for none). ``segmenter``: the
    mask network that separates each chromosome from touching and crossing neighbours before
    its crop is cut (``segmentation``: the same choices)."""

    def __init__(self, bundle: str | Path | None = None, device: str = "auto", batch_size: int = 64,
                 flip_tta: bool = True, orientation: str | Path | bool = True,
                 segmentation: str | Path | bool = True):
        self.device = choose_device(device)
        if self.device.type == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
            torch.set_num_threads(os.cpu_count() or 1)
        self.path = Path(bundle or DEFAULT_MODEL)
        self.model, self.meta = load_bundle(self.path, self.device)
        self.companion = load_companion(self.path, self.meta, self.device)
        self.batch_size = batch_size
        # chromosomes lie either way up and either side out: averaging the four flips removes that nuisance
        self.flip_tta = flip_tta and bool(self.meta.training.get("flip_tta", True))
        self.orienter = find_orienter(orientation, self.device)
        self.segmenter = find_segmenter(segmentation, self.device)

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def preprocess(self):
        return self.meta.preprocess

    @property
    def info(self) -> BundleMeta:
        return self.meta

    @property
    def has_context(self) -> bool:
        return self.model.context is not None

    @property
    def has_reject(self) -> bool:
        return self.model.reject is not None

    @property
    def reject_threshold(self) -> float:
        return self.meta.reject.threshold if self.meta.reject else 1.0

    @torch.inference_mode()
    def predict_arrays(self, images: np.ndarray, features: np.ndarray, with_reject: bool = False,
                       reject_features: np.ndarray | None = None, companion: tuple[np.ndarray, np.ndarray] | None = None):
        """Crop network only: each chromosome on its own. ``with_reject``: also the "not a
        chromosome" probability of each (zeros without a reject head), from ``reject_features``
        (``CellCrops.reject_features``) when the head reads them. ``companion``: the companion
        network's (images, features) (``CellCrops.companion_*``), needed when the bundle has one:
        the two networks' probabilities are averaged."""
        if len(images) != len(features):
            raise ValueError(f"{len(images)} crops but {len(features)} feature rows")
        if self.companion is not None and (companion is None or companion[0] is None or len(companion[0]) != len(images)):
            raise ValueError("this classifier averages two crop networks: pass the companion crops "
                             "(preprocess_cell makes them with the classifier's preprocess)")
        if len(images) == 0:
            empty = np.zeros((0, len(self.meta.classes)), dtype=np.float32)
            return (empty, np.zeros(0, np.float32)) if with_reject else empty
        features = np.asarray(features, dtype=np.float32)  # callers may pass float64; the network is float32
        out, rej = [], []
        for start in range(0, len(images), self.batch_size):
            part = slice(start, start + self.batch_size)
            x, f = self._tensor(images[part]), self._tensor(features[part])
            if with_reject:
                rf = None if reject_features is None else self._tensor(np.asarray(reject_features[part], dtype=np.float32))
                p, r = predict_reject(self.model, x, f, self.flip_tta, rf)
                rej.append(r.cpu().numpy())
            else:
                p = predict_batch(self.model, x, f, self.flip_tta)
            if self.companion is not None:
                w = self.meta.companion["weight"]
                other = predict_batch(self.companion, self._tensor(companion[0][part]),
                                      self._tensor(np.asarray(companion[1][part], dtype=np.float32)), self.flip_tta)
                p = (1 - w) * p + w * other
            out.append(p.cpu().numpy())
        return (np.concatenate(out), np.concatenate(rej)) if with_reject else np.concatenate(out)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def predict_each(self, crops: CellCrops) -> np.ndarray:
        """Crop network only, for any subset of a cell's crops (the GUI predicts in chunks)."""
        return self.predict_arrays(crops.images, crops.features, companion=_companion_of(crops))

    def predict_each_with_reject(self, crops: CellCrops) -> tuple[np.ndarray, np.ndarray]:
        return self.predict_arrays(crops.images, crops.features, with_reject=True, reject_features=crops.reject_features,
                                   companion=_companion_of(crops))

    def finish_cell(self, probs: np.ndarray, reject_p: np.ndarray, features: np.ndarray,
                    doubt: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The cell-context stage over the boxes that hold a chromosome (a rejected box must not
        count as one of the cell's chromosomes); rejected boxes keep the crop network's answer.
        ``doubt``: per box, nats by which the detector's score fell short of its threshold (0 for
        the rest): such a box starts out of the cell. A box held out that the cell's assignment
        needs comes back (``core.karyotype.rescue_rejected``). Returns (probabilities, rejected)."""
        reject_p = np.asarray(reject_p, dtype=np.float64)
        doubt = np.zeros(len(reject_p)) if doubt is None else np.asarray(doubt, dtype=np.float64)
        rejected = (reject_p >= self.reject_threshold) | (doubt > 0)
        final = self._in_context_kept(probs, features, rejected)
        # the cell has a say: a box held out that fills a slot left empty comes back
        margin = doubt + np.array([max(0.0, logit(p) - logit(self.reject_threshold)) for p in reject_p])
        rescued = rescue_rejected(final, margin, rejected)
        if not np.array_equal(rescued, rejected):
            rejected, final = rescued, self._in_context_kept(probs, features, rescued)
        return final, rejected

    def _in_context_kept(self, probs: np.ndarray, features: np.ndarray, rejected: np.ndarray) -> np.ndarray:
        final = np.array(probs, dtype=np.float32, copy=True)
        keep = np.flatnonzero(~rejected)
        if len(keep):
            final[keep] = self.in_context(final[keep], np.asarray(features)[keep])
        return final

    def predict_cell(self, crops: CellCrops, doubt: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One whole cell: (probabilities, "not a chromosome" probability, rejected); ``doubt`` as
        in ``finish_cell``."""
        probs, reject_p = self.predict_each_with_reject(crops)
        final, rejected = self.finish_cell(probs, reject_p, crops.features, doubt)
        return final, reject_p, rejected

    @torch.inference_mode()
    def in_context(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        """One whole cell's crop-network probabilities re-scored together; unchanged without a context stage."""
        probs = np.asarray(probs, dtype=np.float32)
        if self.model.context is None or len(probs) == 0:
            return probs
        context = self.model.context
        logp = torch.from_numpy(np.log(np.clip(probs, 1e-6, 1.0)))[None].to(self.device)
        feats = torch.from_numpy(np.asarray(features, dtype=np.float32))[None].to(self.device)
        assigned = None
        if context.cfg.assignment:
            assigned = torch.from_numpy(assignment_onehot(probs, context.cfg.assignment))[None].to(self.device)
        return torch.softmax(context(logp, feats, assigned=assigned).float(), -1)[0].cpu().numpy()

    def predict(self, crops: CellCrops) -> np.ndarray:
        """All chromosomes of one cell: crop network, then the cell-context stage."""
        return self.in_context(self.predict_each(crops), crops.features)

    def predict_cells(self, images: np.ndarray, features: np.ndarray, groups: list[np.ndarray],
                      companion: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Many cells at once (evaluation): (crop-network, final) probabilities; ``groups`` are the
        row indices of each cell; ``companion`` as in ``predict_arrays``."""
        each = self.predict_arrays(images, features, companion=companion)
        final = each.copy()
        for rows in groups:
            final[rows] = self.in_context(each[rows], features[rows])
        return each, final


def _companion_of(crops: CellCrops) -> tuple[np.ndarray, np.ndarray] | None:
    return None if crops.companion_images is None else (crops.companion_images, crops.companion_features)
