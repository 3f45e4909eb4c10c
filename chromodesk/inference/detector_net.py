"""The learned chromosome detector's network: a small centre-heatmap detector (CenterNet).

Why a centre heatmap: crossing chromosomes have boxes that overlap heavily, and the
non-maximum suppression of anchor detectors removes one of them; here every chromosome
is one peak of a heatmap, read off by a 3x3 local maximum, with its box size and
sub-pixel offset regressed at that peak. No anchors, no NMS, one class.

Two chromosomes that cross near their middles share a centre, hence one peak: measured on
validation images, four in five chromosomes the detector missed were such a partner. With
``twin`` a fifth head answers at every peak whether a second chromosome is centred there too,
and regresses that one's size and offset, so a crossing pair comes out as two boxes.

A residual encoder (strides 2..32, for the context of a whole chromosome and its
neighbours) and a top-down decoder with lateral connections back to stride 4; sized to
train from random weights on two CPU cores.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x), inplace=True)


WIDTHS = {"small": (24, 32, 64, 96, 128, 64), "base": (32, 48, 96, 160, 192, 96)}


class CenterNetLite(nn.Module):
    """Input (N, 1, H, W), H and W multiples of 32. Output at stride 4: heatmap logits (N, 1),
    log box size in output cells (N, 2: w, h), centre offset within the cell (N, 2); with
    ``twin`` also (N, 5): a second chromosome at this centre (logit), its log size and offset."""

    def __init__(self, width: str = "base", twin: bool = False):
        super().__init__()
        c0, c1, c2, c3, c4, d = WIDTHS[width]
        self.width = width
        self.stem = nn.Sequential(_conv_bn(1, c0, 2), _conv_bn(c0, c0))  # /2
        self.s4 = nn.Sequential(_Block(c0, c1, 2), _Block(c1, c1, 1))  # /4
        self.s8 = nn.Sequential(_Block(c1, c2, 2), _Block(c2, c2, 1))  # /8
        self.s16 = nn.Sequential(_Block(c2, c3, 2), _Block(c3, c3, 1))  # /16
        self.s32 = nn.Sequential(_Block(c3, c4, 2), _Block(c4, c4, 1))  # /32
        self.lat = nn.ModuleList([nn.Conv2d(c, d, 1) for c in (c1, c2, c3, c4)])
        self.smooth = nn.ModuleList([_conv_bn(d, d) for _ in range(3)])
        self.heat = nn.Sequential(_conv_bn(d, d), nn.Conv2d(d, 1, 1))
        self.size = nn.Sequential(_conv_bn(d, d), nn.Conv2d(d, 2, 1))
        self.offset = nn.Sequential(_conv_bn(d, d), nn.Conv2d(d, 2, 1))
        self.twin = nn.Sequential(_conv_bn(d, d), nn.Conv2d(d, 5, 1)) if twin else None
        if twin:
            nn.init.constant_(self.twin[-1].bias[0], -4.6)  # a shared centre is rare
        # focal-loss prior: start with every cell at p = 0.01 background, as CenterNet does
        nn.init.constant_(self.heat[-1].bias, -4.6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        top = self.lat[3](f32)
        for lat, smooth, feat in zip((self.lat[2], self.lat[1], self.lat[0]), self.smooth, (f16, f8, f4)):
            top = smooth(lat(feat) + F.interpolate(top, size=feat.shape[-2:], mode="nearest"))
        out = (self.heat(top), self.size(top), self.offset(top))
        return out + (self.twin(top),) if self.twin is not None else out


@torch.inference_mode()
def decode(heat_logits: torch.Tensor, log_size: torch.Tensor, offset: torch.Tensor, threshold: float,
           max_objects: int = 200, twin: torch.Tensor | None = None) -> list[np.ndarray]:
    """Peaks above ``threshold`` -> per image an (n, 5) array ``x0, y0, x1, y1, score`` in output cells.
    With ``twin`` maps, a peak whose twin says so gives a second box, scored peak x twin
    probability (kept when that is above ``threshold`` too)."""
    heat = torch.sigmoid(heat_logits.float())
    peaks = heat == F.max_pool2d(heat, 3, 1, 1)
    out = []
    n, _, h, w = heat.shape
    for i in range(n):
        score = (heat[i, 0] * peaks[i, 0]).flatten()
        k = min(max_objects, score.numel())
        top, idx = torch.topk(score, k)
        keep = top >= threshold
        top, idx = top[keep], idx[keep]
        ys, xs = (idx // w).float(), (idx % w).float()
        ox, oy = offset[i, 0].flatten()[idx].float(), offset[i, 1].flatten()[idx].float()
        bw, bh = log_size[i, 0].flatten()[idx].float().exp(), log_size[i, 1].flatten()[idx].float().exp()
        cx, cy = xs + ox, ys + oy
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, top], 1)
        if twin is not None and len(idx):
            t = twin[i].float().flatten(1)[:, idx]
            score2 = top * torch.sigmoid(t[0])
            two = score2 >= threshold
            tw, th = t[1, two].exp(), t[2, two].exp()
            tx, ty = xs[two] + t[3, two], ys[two] + t[4, two]
            boxes = torch.cat([boxes, torch.stack([tx - tw / 2, ty - th / 2, tx + tw / 2, ty + th / 2, score2[two]], 1)])
        out.append(boxes.cpu().numpy())
    return out
