"""Cell-level reasoning: joint label assignment, counts, numerical flags and an ISCN string.

Classifying chromosomes one by one can give impossible cells (three 9s, one 10). Here
all chromosomes of a cell are assigned together (``scipy.optimize.linear_sum_assignment``)
to karyotype slots. Each autosome has two ordinary slots and one extra slot:
filling an ordinary slot earns ``loss_penalty`` (so leaving one empty, a monosomy,
costs that much) and the extra slot costs ``gain_penalty`` (a trisomy must be paid for
by the evidence). The sex chromosomes are fixed per hypothesis (XX, XY, then X, XXY,
XYY, XXX at ``sex_penalty``) and the cheapest hypothesis wins. So a real +21 or 45,X
survives when the classifier's evidence for it is strong, while a single uncertain
chromosome is pulled back to the normal count. Confirmed labels are hard constraints.
Penalties are in nats (natural-log probability units) and are calibrated on development
cells by ``training.evaluate``; the defaults below come from that calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .labels import AUTOSOMES, CLASS_INDEX, CLASSES

SEX_HYPOTHESES: dict[str, tuple[int, int]] = {  # name -> (X count, Y count)
    "XX": (2, 0), "XY": (1, 1), "X": (1, 0), "XXY": (2, 1), "XYY": (1, 2), "XXX": (3, 0),
}
NORMAL_SEX = ("XX", "XY")
_BIG = 1e6


@dataclass(frozen=True)
class AssignmentConfig:
    # chosen by `chromodesk-train calibrate` on the development cells (train + validation
    # split, 941 cells with recorded findings) of the shipped model: see README
    gain_penalty: float = 4.0
    loss_penalty: float = 4.0
    sex_penalty: float = 6.0
    # an unconfirmed chromosome is never moved to a label the classifier gives less than this:
    # the cell then shows a gain and a loss instead of a surprise relabelling
    min_probability: float = 0.01


MIN_CELL_FOR_ASSIGNMENT = 30  # counts mean something only for (nearly) a whole cell


@dataclass
class CellAnalysis:
    assigned: list[str | None]
    counts: dict[str, int]
    sex: str
    flags: list[dict] = field(default_factory=list)
    iscn: str = ""
    confidence: float = 0.0  # geometric mean of the assigned labels' probabilities

    def to_json(self) -> dict:
        return {"counts": self.counts, "flags": self.flags, "iscn": self.iscn, "sex_chromosomes": self.sex,
                "cell_confidence": round(float(self.confidence), 4)}


def _cost_matrix(logp: np.ndarray, sex: tuple[int, int], cfg: AssignmentConfig, fixed: dict[int, str]):
    columns: list[str] = []
    extra: list[float] = []
    for label in AUTOSOMES:
        columns += [label, label, label]
        extra += [-cfg.loss_penalty, -cfg.loss_penalty, cfg.gain_penalty]
    n_x, n_y = sex
    columns += ["X"] * n_x + ["Y"] * n_y
    extra += [-cfg.loss_penalty] * (n_x + n_y)  # a sex slot must be filled like an ordinary slot
    col_class = np.array([CLASS_INDEX[c] for c in columns])
    return _slot_costs(logp, col_class, cfg, fixed, np.array(extra)), columns


def _slot_costs(logp: np.ndarray, col_class: np.ndarray, cfg: AssignmentConfig, fixed: dict[int, str],
                extra: np.ndarray | float = 0.0) -> np.ndarray:
    """-log p of each chromosome (row) in each slot (column of class ``col_class``), plus the slot's
    ``extra``; ``_BIG`` where a confirmed label or the ``min_probability`` floor forbids it."""
    cost = -logp[:, col_class] + extra
    if cfg.min_probability > 0:
        unlikely = logp[:, col_class] < np.log(cfg.min_probability)
        unlikely[list(fixed)] = False
        cost[unlikely] = _BIG
    for row, label in fixed.items():
        cost[row, col_class != CLASS_INDEX[label]] = _BIG
    return cost


def _hypothesis(logp: np.ndarray, probs: np.ndarray, name: str, fixed: dict[int, str], cfg: AssignmentConfig):
    """(labels, cost) of the best assignment under one sex hypothesis; None when it cannot hold the cell."""
    sex = SEX_HYPOTHESES[name]
    n = len(logp)
    if n > 3 * len(AUTOSOMES) + sum(sex):
        return None
    fixed_x = sum(1 for v in fixed.values() if v == "X")
    fixed_y = sum(1 for v in fixed.values() if v == "Y")
    if fixed_x > sex[0] or fixed_y > sex[1]:
        return None
    cost, columns = _cost_matrix(logp, sex, cfg, fixed)
    rows, cols = linear_sum_assignment(cost)
    total = float(cost[rows, cols].sum()) + (0.0 if name in NORMAL_SEX else cfg.sex_penalty)
    # unfilled sex slots were not paid: add their missing bonus so hypotheses compare fairly
    filled = {c for c in cols if columns[c] in ("X", "Y")}
    total += cfg.loss_penalty * (sum(sex) - len(filled))
    labels: list[str | None] = [None] * n
    for r, c in zip(rows, cols):
        # a forbidden cell (only in absurd cells, e.g. three sure Ys): the chromosome's own best label
        labels[r] = columns[c] if cost[r, c] < _BIG / 2 or r in fixed else CLASSES[int(probs[r].argmax())]
    return labels, total


def assign(probs: np.ndarray, fixed: dict[int, str] | None = None, cfg: AssignmentConfig = AssignmentConfig()):
    """Best labels for all rows of ``probs`` (N x 24). Returns (labels, sex hypothesis, cost)."""
    fixed = fixed or {}
    if len(probs) == 0:
        return [], "XX", 0.0
    logp = np.log(np.clip(probs, 1e-9, 1.0))
    best = None
    for name in SEX_HYPOTHESES:
        found = _hypothesis(logp, probs, name, fixed, cfg)
        if found is not None and (best is None or found[1] < best[2]):
            best = (found[0], name, found[1])
    if best is None:  # more objects than any karyotype holds: fall back to independent labels
        return [CLASSES[i] for i in probs.argmax(1)], "XX", float("nan")
    return best


def normal_sex_costs(probs: np.ndarray, fixed: dict[int, str] | None = None,
                     cfg: AssignmentConfig = AssignmentConfig()) -> dict[str, float]:
    """The cost (nats) of the cell's best assignment as 46,XX and as 46,XY (``inf`` where confirmed
    labels rule one out). A case sums them to weigh its cells' evidence for one sex."""
    fixed = fixed or {}
    if len(probs) < MIN_CELL_FOR_ASSIGNMENT:
        return {}  # a fragment of a cell says little about its sex
    logp = np.log(np.clip(probs, 1e-9, 1.0))
    out = {}
    for name in NORMAL_SEX:
        found = _hypothesis(logp, probs, name, fixed, cfg)
        out[name] = found[1] if found is not None else float("inf")
    return out


def counts_cost(probs: np.ndarray, counts: dict[str, int], fixed: dict[int, str] | None = None,
                cfg: AssignmentConfig = AssignmentConfig()) -> float:
    """The cost (nats, minus the summed log-probabilities) of the cell's best labelling with exactly
    these counts per label: ``inf`` when the numbers differ or confirmed labels (or labels the
    classifier gives under ``min_probability``) rule it out. Two readings of one cell compare by it:
    how much more one misreading the other would have to assume."""
    fixed = fixed or {}
    slots = [label for label, k in counts.items() for _ in range(k)]
    if len(slots) != len(probs) or any(label not in CLASS_INDEX for label in slots):
        return float("inf")
    if len(slots) == 0:
        return 0.0
    col_class = np.array([CLASS_INDEX[c] for c in slots])
    cost = _slot_costs(np.log(np.clip(probs, 1e-9, 1.0)), col_class, cfg, fixed)
    rows, cols = linear_sum_assignment(cost)
    total = float(cost[rows, cols].sum())
    return total if total < _BIG / 2 else float("inf")


def logit(p: float) -> float:
    p = min(max(float(p), 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def doubt_nats(score: float, threshold: float) -> float:
    """How far a score falls short of its threshold, in nats (0 at or above it)."""
    return max(0.0, logit(threshold) - logit(score))


def rescue_rejected(probs: np.ndarray, margin: np.ndarray, rejected: np.ndarray,
                    cfg: AssignmentConfig = AssignmentConfig()) -> np.ndarray:
    """The cell's say in "not a chromosome": a box held out of the cell comes back when the cell's
    joint assignment gains more from it (it fills a slot left empty) than the evidence against it,
    both in nats: ``cost(without) - cost(with) > margin``. ``margin``: per box, the reject
    network's log-odds above its threshold plus, for a box the detector scored under its own
    threshold, that shortfall (``doubt_nats``). Boxes are tried from the least doubted. Only in
    (nearly) whole cells, where an empty slot means something. Returns the new ``rejected``."""
    rejected = np.asarray(rejected, dtype=bool).copy()
    keep = [int(i) for i in np.flatnonzero(~rejected)]
    if not rejected.any() or len(keep) < MIN_CELL_FOR_ASSIGNMENT:
        return rejected
    cost = assign(probs[keep], cfg=cfg)[2]
    for i in sorted(np.flatnonzero(rejected), key=lambda i: margin[i]):
        trial = assign(probs[keep + [int(i)]], cfg=cfg)[2]
        if cost - trial > margin[i]:
            keep.append(int(i))
            cost, rejected[i] = trial, False
    return rejected


def iscn_string(counts: dict[str, int]) -> str:
    """ISCN 2020 notation for numerical findings, e.g. ``47,XY,+21``, ``45,X``, ``46,XX``."""
    total = sum(counts.values())
    sex = "X" * counts.get("X", 0) + "Y" * counts.get("Y", 0)
    parts = [str(total), sex or "--"]
    for label in AUTOSOMES:
        k = counts.get(label, 0)
        if k > 2:
            parts += [f"+{label}"] * (k - 2)
        elif k < 2:
            parts += [f"-{label}"] * (2 - k)
    return ",".join(parts)


def cell_flags(counts: dict[str, int]) -> list[dict]:
    flags = []
    total = sum(counts.values())
    for label in AUTOSOMES:
        k = counts.get(label, 0)
        if k != 2:
            flags.append({"type": "gain" if k > 2 else "loss", "label": label, "count": k})
    sex = "X" * counts.get("X", 0) + "Y" * counts.get("Y", 0)
    if sex not in NORMAL_SEX:
        flags.append({"type": "sex", "label": sex or "none", "count": counts.get("X", 0) + counts.get("Y", 0)})
    if total != 46:
        flags.append({"type": "total", "label": "total", "count": total})
    return flags


def analyse_cell(probs: np.ndarray, fixed: dict[int, str] | None = None,
                 cfg: AssignmentConfig = AssignmentConfig()) -> CellAnalysis:
    labels, sex, _ = assign(probs, fixed, cfg)
    counts = {c: 0 for c in CLASSES}
    for label in labels:
        if label is not None:
            counts[label] += 1
    chosen = [probs[i, CLASS_INDEX[l]] for i, l in enumerate(labels) if l is not None]
    confidence = float(np.exp(np.mean(np.log(np.clip(chosen, 1e-9, 1))))) if chosen else 0.0
    return CellAnalysis(labels, counts, sex, cell_flags(counts), iscn_string(counts), confidence)


def is_numerically_abnormal(flags: list[dict]) -> bool:
    """An autosomal gain or an abnormal sex complement: a numerical finding to report.

    An autosome missing from one spread is flagged too (type "loss") but is not counted as
    a finding: autosomal monosomy is almost never viable, and a chromosome lost while the
    metaphase was spread is common; the lab confirms by counting further cells.
    """
    return any(f["type"] in ("gain", "sex") for f in flags)
