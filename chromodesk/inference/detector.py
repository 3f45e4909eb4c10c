"""The learned detector at run time: its bundle (safetensors + JSON, verified on load) and
``Detector.detect(gray)`` -> boxes with scores, in image pixels.

Bundle JSON: ``kind: "detector"``, format version, model id, network width, the input
scale, the score threshold chosen on the validation cases, training summary, metrics and
the weights' SHA-256 (checked before anything is read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from chromodesk.bundled import models_dir
from chromodesk.core.detector_input import OUTPUT_STRIDE, detector_input, pad_to_multiple
from chromodesk.core.document import Box
from chromodesk.core.errors import InputError
from chromodesk.core.karyotype import doubt_nats

from .bundle import bundle_paths, load_checked_state, read_json_object, read_verified_weights, save_bundle
from .detector_net import WIDTHS, CenterNetLite, decode

FORMAT_VERSION = 1
DEFAULT_DETECTOR = models_dir() / "chromodesk-detector.json"


@dataclass
class DetectorMeta:
    model_id: str
    width: str = "small"
    scale: float = 0.5
    threshold: float = 0.3
    polarity: str = "auto"
    tta: bool = False  # average the four flips (chosen on validation)
    twin: bool = False  # the network answers for a second chromosome sharing a centre (a crossing)
    # boxes scored in [doubt_floor, threshold) come too, "doubted" by doubt_weight x the nats their
    # score falls short: they join the cell only where it has room for them (chosen on validation)
    doubt_floor: float | None = None
    doubt_weight: float = 1.0
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    weights_file: str = ""

    def to_json(self) -> dict:
        return {"kind": "detector", "format_version": FORMAT_VERSION, "model_id": self.model_id, "width": self.width,
                "scale": self.scale, "threshold": self.threshold, "polarity": self.polarity, "tta": self.tta,
                "twin": self.twin, "doubt_floor": self.doubt_floor, "doubt_weight": self.doubt_weight,
                "weights_file": self.weights_file, "weights_sha256": self.weights_sha256,
                "training": self.training, "metrics": self.metrics}


save_detector = save_bundle  # the same two files, a DetectorMeta in the JSON


def read_detector_meta(path: str | Path) -> DetectorMeta:
    json_path, _ = bundle_paths(path)
    data = read_json_object(json_path, "detector")
    if data.get("kind") != "detector":
        raise InputError(json_path, "not a detector bundle (no \"kind\": \"detector\")")
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(json_path, f"unsupported detector bundle format {data.get('format_version')!r}")
    try:
        meta = DetectorMeta(model_id=str(data["model_id"]), width=str(data["width"]), scale=float(data["scale"]),
                            threshold=float(data["threshold"]), polarity=str(data.get("polarity", "auto")),
                            tta=bool(data.get("tta", False)), twin=bool(data.get("twin", False)),
                            doubt_floor=None if data.get("doubt_floor") is None else float(data["doubt_floor"]),
                            doubt_weight=float(data.get("doubt_weight", 1.0)),
                            training=data.get("training", {}), metrics=data.get("metrics", {}),
                            weights_sha256=str(data["weights_sha256"]),
                            weights_file=str(data.get("weights_file") or json_path.with_suffix(".safetensors").name))
    except KeyError as exc:
        raise InputError(json_path, f"detector metadata lacks the key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(json_path, f"detector metadata has a malformed value ({exc})") from None
    if meta.width not in WIDTHS:
        raise InputError(json_path, f"unknown detector width {meta.width!r}")
    if not (0.05 <= meta.scale <= 4.0) or not (0.0 < meta.threshold < 1.0):
        raise InputError(json_path, f"scale {meta.scale} or threshold {meta.threshold} out of range")
    if meta.doubt_floor is not None and not (0.0 < meta.doubt_floor <= meta.threshold and 0.0 < meta.doubt_weight <= 100.0):
        raise InputError(json_path, f"doubt_floor {meta.doubt_floor} (0 to the threshold) or doubt_weight "
                                    f"{meta.doubt_weight} (0 to 100) out of range")
    return meta


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[CenterNetLite, DetectorMeta]:
    meta = read_detector_meta(path)
    json_path, _ = bundle_paths(path)
    weights_path, state = read_verified_weights(json_path, meta.weights_file, meta.weights_sha256, "detector")
    model = load_checked_state(CenterNetLite(meta.width, twin=meta.twin), state, weights_path,
                               f"the {meta.width} detector" + (" with its twin head" if meta.twin else ""))
    return model.to(device), meta


def _unflip_offsets(offset: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """A flipped cell's offset ``o`` is ``1 - o`` along the flipped axis (offsets are (N, 2, H, W))."""
    offset = offset.clone()
    if 3 in dims:
        offset[:, 0] = 1 - offset[:, 0]
    if 2 in dims:
        offset[:, 1] = 1 - offset[:, 1]
    return offset


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


def _untranspose(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Maps of a transposed picture back in the picture's frame: transposed, with the (w, h)
    and (ox, oy) channel pairs swapped."""
    heat, size, offset = (m.transpose(2, 3) for m in maps[:3])
    out = [heat, size.flip(1), offset.flip(1)]
    if len(maps) > 3:
        tw = maps[3].transpose(2, 3)
        out.append(torch.cat([tw[:, :1], tw[:, 1:3].flip(1), tw[:, 3:5].flip(1)], 1))
    return out


@torch.inference_mode()
def flip_averaged(model: CenterNetLite, t: torch.Tensor, transposes: bool = False) -> tuple[torch.Tensor, ...]:
    """The network's maps averaged over the picture and its three flips (``transposes``: and the
    four flips of its transpose, i.e. the quarter turns too): probabilities for the heatmap (and
    the twin's presence), log sizes and offsets mapped back. Heat and presence come back as logits."""
    views = []
    for transpose in ((False, True) if transposes else (False,)):
        x = t.transpose(2, 3) if transpose else t
        for dims in ((), (3,), (2,), (2, 3)):
            maps = [v.float() for v in model(x.flip(dims) if dims else x)]
            maps = [v.flip(dims) if dims else v for v in maps]
            heat, size, offset = torch.sigmoid(maps[0]), maps[1], _unflip_offsets(maps[2], dims)
            view = [heat, size, offset]
            if len(maps) > 3:
                tw = maps[3]
                view.append(torch.cat([torch.sigmoid(tw[:, :1]), tw[:, 1:3], _unflip_offsets(tw[:, 3:5], dims)], 1))
            views.append(_untranspose(view) if transpose else view)
    mean = [torch.stack(v).mean(0) for v in zip(*views)]
    mean[0] = _logit(mean[0])
    if len(mean) > 3:
        mean[3] = torch.cat([_logit(mean[3][:, :1]), mean[3][:, 1:]], 1)
    return tuple(mean)


@torch.inference_mode()
def run_detector(model: CenterNetLite, gray: np.ndarray, scale: float, threshold: float, polarity: str = "auto",
                 device: torch.device | str = "cpu", tta: bool = False) -> np.ndarray:
    """(n, 5) boxes ``x0, y0, x1, y1, score`` in image pixels (float), clipped to the image."""
    x = detector_input(gray, scale, polarity)
    t = torch.from_numpy(pad_to_multiple(x)).to(device)[None, None]
    maps = flip_averaged(model, t) if tta else model(t)
    found = decode(*maps[:3], threshold, twin=maps[3] if len(maps) > 3 else None)[0]
    found[:, :4] *= OUTPUT_STRIDE / scale
    h, w = gray.shape
    found[:, [0, 2]] = found[:, [0, 2]].clip(0, w)
    found[:, [1, 3]] = found[:, [1, 3]].clip(0, h)
    return found


class Detector:
    """A loaded detector bundle. ``detect`` returns integer boxes and their scores."""

    def __init__(self, bundle: str | Path | None = None, device: str = "auto"):
        from .classifier import choose_device

        self.device = choose_device(device)
        self.path = Path(bundle) if bundle else DEFAULT_DETECTOR
        t0 = time.perf_counter()
        self.model, self.meta = load_detector(self.path, self.device)
        self.load_seconds = time.perf_counter() - t0

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    def detect_array(self, gray: np.ndarray, threshold: float | None = None) -> np.ndarray:
        return run_detector(self.model, gray, self.meta.scale, self.meta.threshold if threshold is None else threshold,
                            self.meta.polarity, self.device, self.meta.tta)

    def detect(self, gray: np.ndarray, threshold: float | None = None) -> list[tuple[Box, float]]:
        return image_boxes(self.detect_array(gray, threshold), gray.shape)

    def detect_doubted(self, gray: np.ndarray) -> list[tuple[Box, float]]:
        """(box, doubt) for every box scored at least the bundle's ``doubt_floor`` (its threshold
        when it has none): doubt 0 at or above the threshold, else ``doubt_weight`` x the nats the
        score falls short (``core.karyotype.doubt_nats``)."""
        m = self.meta
        floor = m.threshold if m.doubt_floor is None else m.doubt_floor
        return [(box, doubt_of(score, m)) for box, score in self.detect(gray, threshold=floor)]


def doubt_of(score: float, meta: DetectorMeta) -> float:
    return meta.doubt_weight * doubt_nats(score, meta.threshold)


def image_boxes(found: np.ndarray, shape: tuple[int, int]) -> list[tuple[Box, float]]:
    """Detections (x0, y0, x1, y1, score; float pixels) as whole-pixel boxes inside the image, with
    their scores; empty boxes dropped."""
    boxes = whole_pixel_boxes(found, shape)
    return [(box, float(s)) for box, s in zip(boxes, found[:, 4]) if not box.is_empty()]


def whole_pixel_boxes(found: np.ndarray, shape: tuple[int, int]) -> list[Box]:
    """Each detection's float box grown to whole pixels and clipped to the image (may be empty),
    one per row, as the document stores boxes."""
    h, w = shape
    return [Box(int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))).clipped(w, h)
            for x0, y0, x1, y1 in np.asarray(found)[:, :4]]


def default_detector_available() -> bool:
    return DEFAULT_DETECTOR.is_file()
