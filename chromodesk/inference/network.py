"""Classifier networks: a torchvision backbone on one grey channel + a head that also sees
each chromosome's size and staining relative to its cell (``core.preprocess.FEATURE_NAMES``).

Random initialisation only: nothing is ever downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

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


class ChromosomeNet(nn.Module):
    """The crop network (``forward``: one chromosome at a time) and, when the bundle has one,
    its cell-context stage (``context``: all chromosomes of a cell together)."""

    def __init__(self, arch: str = "resnet18", num_classes: int = 24, num_features: int = 5, hidden: int = 256,
                 context: ContextConfig | None = None):
        super().__init__()
        self.context = CellContext(num_classes, num_features, context) if context is not None else None
        self.arch = arch
        self.backbone, width = _backbone(arch)
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

    def forward(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] < self.min_input:
            images = F.interpolate(images, size=(self.min_input, self.min_input), mode="bilinear", align_corners=False)
        return self.head(torch.cat([self.backbone(images), features], dim=1))


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 N x S x S -> float N x 1 x S x S, zero-centred (background 0 -> -1)."""
    return (images_uint8.unsqueeze(1).float() / 127.5) - 1.0


def predict_batch(model: nn.Module, images_uint8: torch.Tensor, features: torch.Tensor, flip_tta: bool) -> torch.Tensor:
    """Probabilities for one batch; with ``flip_tta`` averaged over the picture, its two mirror
    images and its 180° turn (chromosomes lie either way up and either side out; training flips
    the same ways). The one inference path for the app and for training reports."""
    x = to_input(images_uint8)
    if not flip_tta:
        return torch.softmax(model(x, features).float(), dim=1)
    views = torch.cat([x, x.flip(3), x.flip(2), x.flip((2, 3))])
    probs = torch.softmax(model(views, features.repeat(4, 1)).float(), dim=1)
    return probs.view(4, len(x), -1).mean(0)
