"""Which end is the p-arm, at run time: the orientation bundle (safetensors + JSON, verified on
load like every bundle) and ``Orienter.p_up(crops)`` -> P(p-arm up) for every crop read as each
of the 24 classes.

The network was trained on upright karyogram crops, "up" being the crop as it is. In the
product it reads the classifier's crops, which ``rotate_upright`` turned by the angle stored
with each crop; its answer is about that crop as it is. Computing all 24 classes at once
lets the karyogram follow a later label correction without torch.

Bundle JSON: ``kind: "orientation"``, format version, model id, network width, class order,
input size, the preprocessing of the crops it was trained on, training summary, the test
figures and the weights' SHA-256 (checked before anything is read).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from chromodesk.bundled import models_dir
from chromodesk.core.errors import InputError
from chromodesk.core.labels import CLASSES
from chromodesk.core.preprocess import PreprocessConfig

from .bundle import bundle_paths, load_checked_state, read_json_object, read_verified_weights, save_bundle
from .orientation_net import OrientationNet, to_input

FORMAT_VERSION = 1
INPUT_SIZE = 64  # four 2x poolings down to the 4 row bands the head reads
WIDTHS = range(4, 129)
DEFAULT_ORIENTATION = models_dir() / "chromodesk-orientation.json"


@dataclass
class OrientationMeta:
    model_id: str
    width: int = 24
    preprocess: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(upright=False))
    classes: tuple[str, ...] = CLASSES
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    weights_file: str = ""

    def to_json(self) -> dict:
        return {"kind": "orientation", "format_version": FORMAT_VERSION, "model_id": self.model_id,
                "width": self.width, "classes": list(self.classes), "input_size": self.preprocess.size,
                "preprocess": self.preprocess.to_dict(), "weights_file": self.weights_file,
                "weights_sha256": self.weights_sha256, "training": self.training, "metrics": self.metrics}


save_orientation = save_bundle  # the same two files, an OrientationMeta in the JSON


def read_orientation_meta(path: str | Path) -> OrientationMeta:
    json_path, _ = bundle_paths(path)
    data = read_json_object(json_path, "orientation")
    if data.get("kind") != "orientation":
        raise InputError(json_path, "not an orientation bundle (no \"kind\": \"orientation\")")
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(json_path, f"unsupported orientation bundle format {data.get('format_version')!r}")
    try:
        meta = OrientationMeta(
            model_id=str(data["model_id"]), width=data["width"], preprocess=PreprocessConfig.from_dict(data["preprocess"]),
            classes=tuple(data["classes"]), training=data.get("training", {}), metrics=data.get("metrics", {}),
            weights_sha256=str(data["weights_sha256"]),
            weights_file=str(data.get("weights_file") or json_path.with_suffix(".safetensors").name))
        size = data["input_size"]
    except KeyError as exc:
        raise InputError(json_path, f"orientation metadata lacks the key {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(json_path, f"orientation metadata has a malformed value ({exc})") from None
    if meta.classes != CLASSES:
        raise InputError(json_path, f"class list differs from ChromoDesk's 24 classes: {list(meta.classes)}")
    if type(meta.width) is not int or meta.width not in WIDTHS:
        raise InputError(json_path, f"orientation network width {meta.width!r} out of range")
    if size != INPUT_SIZE or meta.preprocess.size != INPUT_SIZE:
        raise InputError(json_path, f"input_size must be {INPUT_SIZE} (found {size!r}, preprocess.size "
                                    f"{meta.preprocess.size!r})")
    return meta


def load_orientation(path: str | Path, device: str | torch.device = "cpu") -> tuple[OrientationNet, OrientationMeta]:
    """Verified load. Any mismatch raises InputError naming the file."""
    meta = read_orientation_meta(path)
    json_path, _ = bundle_paths(path)
    weights_path, state = read_verified_weights(json_path, meta.weights_file, meta.weights_sha256, "orientation")
    model = load_checked_state(OrientationNet(meta.width), state, weights_path,
                               f"the orientation network (width {meta.width})")
    return model.to(device), meta


class Orienter:
    """A loaded orientation bundle. ``p_up`` takes upright crops, returns N x 24 probabilities."""

    def __init__(self, bundle: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 256):
        self.path = Path(bundle) if bundle else DEFAULT_ORIENTATION
        self.device = torch.device(device)
        self.model, self.meta = load_orientation(self.path, self.device)
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def crop_config(self) -> PreprocessConfig:
        """The crops it reads in the product: its training preprocessing, turned upright."""
        return replace(self.meta.preprocess, upright=True)

    @torch.inference_mode()
    def p_up(self, images: np.ndarray) -> np.ndarray:
        """P(p-arm up) of each crop as it is, for each of the 24 classes (N x 24, float64)."""
        out = [np.zeros((0, len(CLASSES)))]
        for start in range(0, len(images), self.batch_size):
            x = to_input(np.ascontiguousarray(images[start : start + self.batch_size])).to(self.device)
            out.append(torch.sigmoid(self.model.every_class(x)).double().cpu().numpy())
        return np.concatenate(out)


def find_orienter(bundle: str | Path | bool | None = True, device: str | torch.device = "cpu") -> Orienter | None:
    """``True``: the shipped bundle when it is installed (None otherwise); a path: that bundle;
    ``False``/``None``: no orientation (the karyogram then turns no chromosome)."""
    if bundle is True:
        return Orienter(DEFAULT_ORIENTATION, device) if DEFAULT_ORIENTATION.is_file() else None
    if not bundle:
        return None
    return Orienter(bundle, device)
