"""Batch augmentation on tensors, after the source report: brightness/contrast jitter;
rotation, translation and scaling; Gaussian blur (kernel 5-9, sigma 0.1-5); flips (a
chromosome mirrored or turned upside down keeps its label). Background stays 0."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    flip: bool = True
    rotate_deg: float = 10.0
    translate: float = 0.06  # fraction of the side
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.15
    contrast: float = 0.15
    blur_p: float = 0.15
    blur_kernels: tuple[int, ...] = (5, 7, 9)
    blur_sigma: tuple[float, float] = (0.1, 5.0)
    feature_noise: float = 0.03  # std of noise on the (log) relative features

    def to_dict(self) -> dict:
        return asdict(self)


def _gaussian_kernel(size: int, sigma: float, device) -> torch.Tensor:
    ax = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def augment(x: torch.Tensor, feats: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator):
    """``x``: float N x 1 x S x S in [0, 1], background 0. Returns augmented (x, feats)."""
    if not cfg.enabled:
        return x, feats
    n, dev = x.shape[0], x.device
    rnd = lambda *shape: torch.rand(*shape, generator=gen).to(dev)  # noqa: E731
    if cfg.flip:
        hflip = rnd(n) < 0.5
        vflip = rnd(n) < 0.5
        x = torch.where(hflip[:, None, None, None], x.flip(3), x)
        x = torch.where(vflip[:, None, None, None], x.flip(2), x)
    angle = (rnd(n) * 2 - 1) * math.radians(cfg.rotate_deg)
    scale = cfg.scale[0] + rnd(n) * (cfg.scale[1] - cfg.scale[0])
    shift = (rnd(n, 2) * 2 - 1) * cfg.translate * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = (x > 0.02).float()
    contrast = 1 + (rnd(n) * 2 - 1) * cfg.contrast
    bright = (rnd(n) * 2 - 1) * cfg.brightness
    x = (x * contrast[:, None, None, None] + bright[:, None, None, None] * mask).clamp(0, 1) * mask
    if cfg.blur_p > 0:
        pick = (rnd(n) < cfg.blur_p).nonzero().flatten().tolist()
        for i in pick:
            k = cfg.blur_kernels[int(torch.randint(len(cfg.blur_kernels), (1,), generator=gen))]
            sigma = float(cfg.blur_sigma[0] + torch.rand(1, generator=gen) * (cfg.blur_sigma[1] - cfg.blur_sigma[0]))
            x[i : i + 1] = F.conv2d(x[i : i + 1], _gaussian_kernel(k, sigma, dev), padding=k // 2)
    if cfg.feature_noise > 0:
        feats = feats + torch.randn(feats.shape, generator=gen).to(dev) * cfg.feature_noise
    return x, feats
