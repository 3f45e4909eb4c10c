"""Classifier networks: a torchvision backbone on one grey channel + a head that also sees
each chromosome's size and staining relative to its cell (``core.preprocess.FEATURE_NAMES``).

Random initialisation only: nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from chromodesk.core.preprocess import BOX_FEATURE_NAMES

from .cell_context import CellContext, ContextConfig

ARCHITECTURES = ("resnet18", "resnet50", "vgg16", "inception_v3", "inception_v3_chu")
MIN_INPUT = {"inception_v3": 75, "inception_v3_chu": 75, "vgg16": 32}


def _backbone(arch: str) -> tuple[nn.Module, int]:
    if arch in ("resnet18", "resnet50"):
        net = getattr(torchvision.models, arch)(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        width = net.fc.in_features
        net.fc = nn.Identity()
        return net, width
    if arch == "vgg16":
        net = torchvision.models.vgg16(weights=None)
        net.features[0] = nn.Conv2d(1, 64, kernel_size=3, padding=1)
        net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        net.classifier = nn.Identity()
        return net, 512
    if arch.startswith("inception_v3"):
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)
        net.Conv2d_1a_3x3.conv = nn.Conv2d(1, 32, kernel_size=3, stride=2, bias=False)
        net.transform_input = False
        width = net.fc.in_features
        net.fc = nn.Identity()
        return net, width
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


@dataclass(frozen=True)
class RejectConfig:
    """The "not a chromosome" head: what it reads (``embedding``: the crop network's picture
    embedding; ``crops``: a small network of its own on the same crops), its width and the
    probability above which a box is rejected (chosen on validation cases so that real
    chromosomes are almost never rejected). ``box_features``: it also reads how each box sits on
    what it holds (``BOX_FEATURE_NAMES``; bundles from before have none)."""

    hidden: int = 64
    threshold: float = 0.5
    kind: str = "embedding"
    box_features: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RejectConfig":
        # bundles from before the crop head have no "kind": theirs read the embedding
        box_features = d.get("box_features", False)
        if not isinstance(box_features, bool):
            raise ValueError(f"reject head box_features {box_features!r} is not true or false")
        cfg = cls(hidden=int(d["hidden"]), threshold=float(d["threshold"]), kind=str(d.get("kind", "embedding")),
                  box_features=box_features)
        if not (0.0 < cfg.threshold < 1.0) or not (1 <= cfg.hidden <= 4096) or cfg.kind not in REJECT_KINDS:
            raise ValueError(f"reject head hidden {cfg.hidden} / threshold {cfg.threshold} / kind {cfg.kind!r} out of range")
        return cfg


REJECT_KINDS = ("embedding", "crops")


class RejectHead(nn.Module):
    """Reads the crop network's picture embedding (flips averaged) and the relative features:
    one logit, high for background, debris, nuclei, fragments and merged clusters."""

    def __init__(self, width: int, cfg: RejectConfig):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, cfg.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden, 1))

    def forward(self, embedding: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([embedding, features], 1)).squeeze(1)


class RejectNet(nn.Module):
    """A small network of its own on each box's crop (the classifier's input, taken already
    zero-centred) and its relative features: one logit, high when the box holds no chromosome.
    The classification network never learned what background looks like; this one does.
    Cheap on purpose (about 4 MFLOPs a crop): it runs on every box, four views each."""

    def __init__(self, num_features: int, cfg: RejectConfig):
        super().__init__()
        c = cfg.hidden

        def conv(i: int, o: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o),
                                 nn.ReLU(inplace=True))

        # half resolution is enough to tell a chromosome from background and debris
        self.body = nn.Sequential(nn.AvgPool2d(2), conv(1, c // 2), conv(c // 2, c, 2), conv(c, 2 * c, 2),
                                  conv(2 * c, 4 * c, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(4 * c + num_features, 2 * c), nn.ReLU(inplace=True), nn.Linear(2 * c, 1))

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.body(x), features], 1)).squeeze(1)


def make_reject(cfg: RejectConfig | None, embedding_width: int, num_features: int) -> nn.Module | None:
    if cfg is None:
        return None
    num_features += len(BOX_FEATURE_NAMES) if cfg.box_features else 0
    if cfg.kind == "crops":
        return RejectNet(num_features, cfg)
    return RejectHead(embedding_width + num_features, cfg)


class ChromosomeNet(nn.Module):
    """The crop network (``forward``: one chromosome at a time) and, when the bundle has one,
    its cell-context stage (``context``: all chromosomes of a cell together)."""

    def __init__(self, arch: str = "resnet18", num_classes: int = 24, num_features: int = 5, hidden: int = 256,
                 context: ContextConfig | None = None, reject: RejectConfig | None = None):
        super().__init__()
        self.context = CellContext(num_classes, num_features, context) if context is not None else None
        self.arch = arch
        self.backbone, width = _backbone(arch)
        self.embedding_width = width
        self.reject_cfg = reject
        self.reject = make_reject(reject, width, num_features)
        self.min_input = MIN_INPUT.get(arch, 0)
        if arch == "inception_v3_chu":
            # Chu (2020): InceptionV3 with a wider fully connected block (1024 -> 512) and dropout
            self.head = nn.Sequential(
                nn.Linear(width + num_features, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, num_classes),
            )
        else:
            self.head = nn.Sequential(
                nn.Linear(width + num_features, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2),
                nn.Linear(hidden, num_classes),
            )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] < self.min_input:
            images = F.interpolate(images, size=(self.min_input, self.min_input), mode="bilinear", align_corners=False)
        return self.backbone(images)

    def forward(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.embed(images), features], dim=1))


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 N x S x S -> float N x 1 x S x S, zero-centred (background 0 -> -1)."""
    return (images_uint8.unsqueeze(1).float() / 127.5) - 1.0


def predict_batch(model: nn.Module, images_uint8: torch.Tensor, features: torch.Tensor, flip_tta: bool,
                  with_embedding: bool = False):
    """Probabilities for one batch; with ``flip_tta`` averaged over the picture, its two mirror
    images and its 180° turn (chromosomes lie either way up and either side out; training flips
    the same ways). The one inference path for the app and for training reports.
    ``with_embedding`` also returns the picture embedding averaged over the same views."""
    x = to_input(images_uint8)
    views = torch.cat([x, x.flip(3), x.flip(2), x.flip((2, 3))]) if flip_tta else x
    k = 4 if flip_tta else 1
    emb = model.embed(views)
    probs = torch.softmax(model.head(torch.cat([emb, features.repeat(k, 1)], 1)).float(), dim=1)
    probs = probs.view(k, len(x), -1).mean(0)
    if not with_embedding:
        return probs
    return probs, emb.float().view(k, len(x), -1).mean(0)


def predict_reject(model: nn.Module, images_uint8: torch.Tensor, features: torch.Tensor, flip_tta: bool,
                   reject_features: torch.Tensor | None = None):
    """(probabilities, "not a chromosome" probability) for one batch; the latter is zero
    when the bundle has no reject head. ``reject_features``: what a head with ``box_features``
    reads instead of ``features`` (``CellCrops.reject_features``)."""
    probs, emb = predict_batch(model, images_uint8, features, flip_tta, with_embedding=True)
    if getattr(model, "reject", None) is None:
        return probs, torch.zeros(len(probs))
    if model.reject_cfg.box_features:
        if reject_features is None:
            raise ValueError("this reject head reads box features; pass CellCrops.reject_features")
        features = reject_features
    if isinstance(model.reject, RejectNet):
        return probs, reject_net_probability(model.reject, images_uint8, features, flip_tta)
    return probs, torch.sigmoid(model.reject(emb, features.float()).float())


def reject_net_probability(net: RejectNet, images_uint8: torch.Tensor, features: torch.Tensor, flip_tta: bool) -> torch.Tensor:
    """The crop reject network's probability, its logit averaged over the same four views as the classifier."""
    x = to_input(images_uint8)
    views = torch.cat([x, x.flip(3), x.flip(2), x.flip((2, 3))]) if flip_tta else x
    k = 4 if flip_tta else 1
    logits = net(views, features.float().repeat(k, 1)).float().view(k, len(x)).mean(0)
    return torch.sigmoid(logits)
