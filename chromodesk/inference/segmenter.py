"""The mask network at run time: its bundle (safetensors + JSON, verified on load) and
``Segmenter.masks(enhanced, boxes)`` -> one 0/1 mask per box, in image pixels.

Bundle JSON: ``kind: "segmenter"``, format version, model id, network width, input size,
window scale, the probability threshold, training summary, metrics (mask IoU on held-out
cells, with the threshold baseline beside it) and the weights' SHA-256.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from chromodesk.bundled import models_dir
from chromodesk.core.document import Box
from chromodesk.core.errors import InputError
from chromodesk.core.mask_input import MASK_SIZE, WINDOW_SCALE, mask_input, window_mask

from .bundle import bundle_paths, load_checked_state, read_json_object, read_verified_weights, save_bundle
from .mask_net import WIDTHS, MaskUNet

FORMAT_VERSION = 1
DEFAULT_SEGMENTER = models_dir() / "chromodesk-masks.json"


@dataclass
class SegmenterMeta:
    model_id: str
    width: str = "small"
    input_size: int = MASK_SIZE
    window_scale: float = WINDOW_SCALE
    threshold: float = 0.5
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    weights_file: str = ""

    def to_json(self) -> dict:
        return {"kind": "segmenter", "format_version": FORMAT_VERSION, "model_id": self.model_id,
                "width": self.width, "input_size": self.input_size, "window_scale": self.window_scale,
                "threshold": self.threshold, "weights_file": self.weights_file,
                "weights_sha256": self.weights_sha256, "training": self.training, "metrics": self.metrics}


save_segmenter = save_bundle


def read_segmenter_meta(path: str | Path) -> SegmenterMeta:
    json_path, _ = bundle_paths(path)
    data = read_json_object(json_path, "segmenter")
    if data.get("kind") != "segmenter":
        raise InputError(json_path, "not a mask (segmenter) bundle (no \"kind\": \"segmenter\")")
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(json_path, f"unsupported segmenter bundle format {data.get('format_version')!r}")
    try:
        meta = SegmenterMeta(model_id=str(data["model_id"]), width=str(data["width"]),
                             input_size=int(data["input_size"]), window_scale=float(data["window_scale"]),
                             threshold=float(data["threshold"]), training=data.get("training", {}),
                             metrics=data.get("metrics", {}), weights_sha256=str(data["weights_sha256"]),
                             weights_file=str(data.get("weights_file") or json_path.with_suffix(".safetensors").name))
    except KeyError as exc:
        raise InputError(json_path, f"segmenter metadata lacks the key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(json_path, f"segmenter metadata has a malformed value ({exc})") from None
    if meta.width not in WIDTHS:
        raise InputError(json_path, f"unknown segmenter width {meta.width!r}")
    if not (16 <= meta.input_size <= 256 and meta.input_size % 8 == 0) or not (1.0 <= meta.window_scale <= 4.0) \
            or not (0.0 < meta.threshold < 1.0):
        raise InputError(json_path, f"input size {meta.input_size}, window scale {meta.window_scale} or threshold "
                                    f"{meta.threshold} out of range")
    return meta


def load_segmenter(path: str | Path, device: str | torch.device = "cpu") -> tuple[MaskUNet, SegmenterMeta]:
    meta = read_segmenter_meta(path)
    json_path, _ = bundle_paths(path)
    weights_path, state = read_verified_weights(json_path, meta.weights_file, meta.weights_sha256, "segmenter")
    model = load_checked_state(MaskUNet(meta.width), state, weights_path, f"the {meta.width} mask network")
    return model.to(device), meta


@torch.inference_mode()
def window_probabilities(model: MaskUNet, inputs: np.ndarray, device: torch.device | str = "cpu",
                         batch: int = 64) -> np.ndarray:
    """(n, 2, s, s) inputs -> (n, s, s) probabilities, averaged with the left-right mirror
    (a chromosome's outline does not depend on which way the picture is mirrored)."""
    out = []
    for start in range(0, len(inputs), batch):
        x = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch])).to(device)
        p = (torch.sigmoid(model(x)) + torch.sigmoid(model(x.flip(3))).flip(2)) / 2
        out.append(p.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + inputs.shape[2:], np.float32)


class Segmenter:
    """A loaded mask bundle: ``masks`` gives each box's chromosome mask over a region."""

    def __init__(self, bundle: str | Path | None = None, device: str | torch.device = "auto"):
        from .classifier import choose_device

        self.device = device if isinstance(device, torch.device) else choose_device(device)
        self.path = Path(bundle) if bundle else DEFAULT_SEGMENTER
        t0 = time.perf_counter()
        self.model, self.meta = load_segmenter(self.path, self.device)
        self.load_seconds = time.perf_counter() - t0

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    def probabilities(self, enhanced: np.ndarray, boxes: Sequence[Box]) -> tuple[np.ndarray, list[Box]]:
        pairs = [mask_input(enhanced, b, self.meta.input_size, self.meta.window_scale) for b in boxes]
        if not pairs:
            return np.zeros((0, self.meta.input_size, self.meta.input_size), np.float32), []
        return window_probabilities(self.model, np.stack([p[0] for p in pairs]), self.device), [p[1] for p in pairs]

    def masks(self, enhanced: np.ndarray, boxes: Sequence[Box], regions: Sequence[Box]) -> list[np.ndarray]:
        """Per box: uint8 0/1 over its region (image pixels; e.g. the box with the preprocessing margin)."""
        probs, windows = self.probabilities(enhanced, boxes)
        return [window_mask(p, w, r, self.meta.threshold) for p, w, r in zip(probs, windows, regions)]


def find_segmenter(bundle: str | Path | bool | None = True, device: str | torch.device = "cpu") -> Segmenter | None:
    """``True``: the shipped bundle when it is installed (None otherwise); a path: that bundle;
    ``False``/``None``: none (crops are then cut by threshold + largest component alone)."""
    if bundle is True:
        return Segmenter(DEFAULT_SEGMENTER, device) if DEFAULT_SEGMENTER.is_file() else None
    if not bundle:
        return None
    return Segmenter(bundle, device)
