"""The p-arm orientation network: an upright chromosome crop and its class -> logit of P(p-arm up).

Trained by ``training/orientation.py``; run by ``chromodesk.inference.orientation``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from chromodesk.core.labels import CLASSES


class OrientationNet(nn.Module):
    """Four conv blocks (64 -> 4 px) and a head that also reads the class: P(p-arm up)."""

    def __init__(self, width: int = 24, classes: int = len(CLASSES)):
        super().__init__()
        chans = [1, width, width * 2, width * 4, width * 5]
        blocks = []
        for a, b in zip(chans, chans[1:]):  # one conv per scale: ~30M multiply-adds, fast on one CPU core
            blocks += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.embed = nn.Embedding(classes, 16)
        # the vertical layout matters (which end is which): keep the rows, pool only across
        self.head = nn.Sequential(nn.Linear(chans[-1] * 4 + 16, 128), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                  nn.Linear(128, 1))

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # N x C x 4 x 4
        return f.mean(dim=3).flatten(1)  # N x (C * 4): one value per channel and row band

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.rows(x), self.embed(label)], dim=1)).squeeze(1)

    def every_class(self, x: torch.Tensor) -> torch.Tensor:
        """N x classes logits: each crop read as every class. The convolutions do not see the
        class, so they run once per crop; only the small head runs crops x classes times."""
        f = self.rows(x)
        n, k = f.shape[0], self.embed.num_embeddings
        both = torch.cat([f.repeat_interleave(k, 0), self.embed.weight.repeat(n, 1)], dim=1)
        return self.head(both).view(n, k)


def to_input(images) -> torch.Tensor:
    """uint8 N x S x S crops (chromosome bright on black) -> the network's N x 1 x S x S in [-1, 1]."""
    return torch.as_tensor(images).float().div_(127.5).sub_(1.0).unsqueeze(1)
