"""The mask network: a small U-Net that outlines the one chromosome a box points at.

Input: two channels (the enhanced window around the box, the box as a filled rectangle;
``core.mask_input``); output: one logit per pixel of that window. Three pooling steps
(64 -> 8 px) give each output pixel the whole window as context (a crossing partner's
other half decides where the chromosome continues); small enough to train from random
weights on one CPU core and to run on a cell's 46 windows in a few tens of milliseconds.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

WIDTHS = {"small": (16, 32, 64, 96)}


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MaskUNet(nn.Module):
    def __init__(self, width: str = "small", in_channels: int = 2):
        super().__init__()
        w = WIDTHS[width]
        self.down = nn.ModuleList([_double(in_channels, w[0])] + [_double(a, b) for a, b in zip(w, w[1:])])
        self.up = nn.ModuleList([_double(b + a, a) for a, b in zip(w[:-1], w[1:])])
        self.out = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(reversed(self.up), reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return self.out(x).squeeze(1)
