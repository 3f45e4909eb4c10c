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

With ``assignment`` set, members also read the cell's best joint assignment of the crop
network's probabilities (``core.karyotype.assign``: two of each autosome, one sex complement,
gains and losses at a price). A transformer alone does not find that global optimum
(validation: 96.4% alone, 97.3% the assignment's labels); given it, a member learns when to
follow it (97.1%), but it also follows it confidently when the assignment is wrong. The
shipped stage therefore averages one member that reads it with one that does not: 97.0%, and
its doubts mark the errors better than either (``training.context``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from chromodesk.core.karyotype import MIN_CELL_FOR_ASSIGNMENT, AssignmentConfig, assign
from chromodesk.core.labels import CLASS_INDEX

LOG_FLOOR = -13.8  # log(1e-6): probabilities below carry no information, only noise


@dataclass(frozen=True)
class ContextConfig:
    dim: int = 96
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    members: int = 1  # independently trained copies whose probabilities are averaged
    # (gain, loss, sex) penalties of the joint assignment the stage reads; None: it reads none.
    # Part of the model, not of the app's settings: the stage was fitted to this very assignment.
    assignment: tuple[float, float, float] | None = None
    assignment_members: int | None = None  # how many members (the first ones) read it; None: all

    def reads_assignment(self, member: int) -> bool:
        return self.assignment is not None and (self.assignment_members is None or member < self.assignment_members)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["assignment"] = list(self.assignment) if self.assignment else None
        return d

    @staticmethod
    def from_dict(d: dict) -> "ContextConfig":
        penalties = d.get("assignment")
        return ContextConfig(dim=int(d["dim"]), layers=int(d["layers"]), heads=int(d["heads"]),
                             dropout=float(d.get("dropout", 0.1)), members=int(d.get("members", 1)),
                             assignment=tuple(float(v) for v in penalties) if penalties else None,
                             assignment_members=None if d.get("assignment_members") is None else int(d["assignment_members"]))


def assignment_onehot(probs: np.ndarray, penalties: tuple[float, float, float]) -> np.ndarray:
    """N x C: a one for each chromosome's label in the cell's best joint assignment; all zeros
    for fewer than ``MIN_CELL_FOR_ASSIGNMENT`` chromosomes (a part of a cell says nothing about counts)."""
    out = np.zeros(probs.shape, np.float32)
    if len(probs) < MIN_CELL_FOR_ASSIGNMENT:
        return out
    gain, loss, sex = penalties
    labels, _, _ = assign(probs, cfg=AssignmentConfig(gain_penalty=gain, loss_penalty=loss, sex_penalty=sex))
    for i, label in enumerate(labels):
        if label is not None:
            out[i, CLASS_INDEX[label]] = 1.0
    return out


class CellContext(nn.Module):
    """``cfg.members`` context networks; with several, their probabilities are averaged (seeds
    differ: the average is steadier than any one of them)."""

    def __init__(self, num_classes: int = 24, num_features: int = 5, cfg: ContextConfig = ContextConfig()):
        super().__init__()
        if cfg.members < 1:
            raise ValueError(f"a context stage needs at least one member, not {cfg.members}")
        self.cfg = cfg
        self.members = nn.ModuleList(ContextMember(num_classes, num_features, cfg, cfg.reads_assignment(m))
                                     for m in range(cfg.members))

    def forward(self, logp: torch.Tensor, features: torch.Tensor, padding: torch.Tensor | None = None,
                assigned: torch.Tensor | None = None) -> torch.Tensor:
        """``logp``: B x N x C log-probabilities, ``features``: B x N x F, ``padding``: B x N, True where
        there is no chromosome, ``assigned``: B x N x C (``assignment_onehot``) when ``cfg.assignment``
        is set. Returns B x N x C logits."""
        if (assigned is None) != (self.cfg.assignment is None):
            raise ValueError("this context stage " + ("needs" if assigned is None else "takes no") + " the cell's assignment")
        outs = [m(logp, features, padding, assigned if m.reads_assignment else None) for m in self.members]
        if len(outs) == 1:
            return outs[0]
        probs = torch.stack([torch.softmax(o, -1) for o in outs]).mean(0)
        return probs.clamp_min(1e-12).log()


class ContextMember(nn.Module):
    def __init__(self, num_classes: int, num_features: int, cfg: ContextConfig, reads_assignment: bool = False):
        super().__init__()
        self.reads_assignment = reads_assignment
        inputs = (3 if reads_assignment else 2) * num_classes + num_features
        self.embed = nn.Sequential(nn.Linear(inputs, cfg.dim), nn.GELU(),
                                   nn.Linear(cfg.dim, cfg.dim))
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 2 * cfg.dim, dropout=cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.correction = nn.Linear(cfg.dim, num_classes)
        nn.init.zeros_(self.correction.weight)  # starts as the identity: the crop network's own answer
        nn.init.zeros_(self.correction.bias)

    def forward(self, logp: torch.Tensor, features: torch.Tensor, padding: torch.Tensor | None = None,
                assigned: torch.Tensor | None = None) -> torch.Tensor:
        logp = logp.clamp(min=LOG_FLOOR)
        probs = logp.exp()
        if padding is not None:
            probs = probs.masked_fill(padding[..., None], 0.0)
        # how many of each class the rest of the cell already seems to hold (2 in a normal cell)
        others = probs.sum(dim=1, keepdim=True) - probs
        parts = [logp / 4.0, features, others / 2.0]  # all at about the same scale
        if self.reads_assignment:
            parts.append(assigned)
        x = torch.cat(parts, dim=-1)
        h = self.encoder(self.embed(x), src_key_padding_mask=padding)
        return logp + self.correction(self.norm(h))
