"""Cell context: re-scores every chromosome's class probabilities in light of the rest of its cell.

The crop network sees one chromosome (plus its size relative to the cell). Cytogeneticists
also compare: if two chromosomes already look like clear 19s, a third pale small
metacentric is more likely a 20 or a 22. A small set transformer over the whole cell
(no order, any count) does that comparison. It reads each chromosome's log-probabilities
from the crop network, its relative features and how many of each class the rest of the
cell seems to hold (the sum of the other chromosomes' probabilities), and adds a
correction to the log-probabilities, so that with a zero correction it returns the crop network unchanged.
It is trained (``chromodesk-train context``) on cells with chromosomes dropped and
duplicated at random, so an extra or a missing chromosome is not forced back to two of each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

LOG_FLOOR = -13.8  # log(1e-6): probabilities below carry no information, only noise


@dataclass(frozen=True)
class ContextConfig:
    dim: int = 96
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    members: int = 1  # independently trained copies whose probabilities are averaged

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ContextConfig":
        return ContextConfig(dim=int(d["dim"]), layers=int(d["layers"]), heads=int(d["heads"]),
                             dropout=float(d.get("dropout", 0.1)), members=int(d.get("members", 1)))


class CellContext(nn.Module):
    """``cfg.members`` context networks; with several, their probabilities are averaged (seeds
    differ: the average is steadier than any one of them)."""

    def __init__(self, num_classes: int = 24, num_features: int = 5, cfg: ContextConfig = ContextConfig()):
        super().__init__()
        if cfg.members < 1:
            raise ValueError(f"a context stage needs at least one member, not {cfg.members}")
        self.members = nn.ModuleList(ContextMember(num_classes, num_features, cfg) for _ in range(cfg.members))

    def forward(self, logp: torch.Tensor, features: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """``logp``: B x N x C log-probabilities, ``features``: B x N x F, ``padding``: B x N, True where
        there is no chromosome. Returns B x N x C logits."""
        if len(self.members) == 1:
            return self.members[0](logp, features, padding)
        probs = torch.stack([torch.softmax(m(logp, features, padding), -1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


class ContextMember(nn.Module):
    def __init__(self, num_classes: int, num_features: int, cfg: ContextConfig):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(2 * num_classes + num_features, cfg.dim), nn.GELU(),
                                   nn.Linear(cfg.dim, cfg.dim))
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 2 * cfg.dim, dropout=cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.correction = nn.Linear(cfg.dim, num_classes)
        nn.init.zeros_(self.correction.weight)  # starts as the identity: the crop network's own answer
        nn.init.zeros_(self.correction.bias)

    def forward(self, logp: torch.Tensor, features: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        logp = logp.clamp(min=LOG_FLOOR)
        probs = logp.exp()
        if padding is not None:
            probs = probs.masked_fill(padding[..., None], 0.0)
        # how many of each class the rest of the cell already seems to hold (2 in a normal cell)
        others = probs.sum(dim=1, keepdim=True) - probs
        x = torch.cat([logp / 4.0, features, others / 2.0], dim=-1)  # all three at about the same scale
        h = self.encoder(self.embed(x), src_key_padding_mask=padding)
        return logp + self.correction(self.norm(h))
