"""A case: the cells of one patient sample, summarised as a cytogenetics report does.

Per cell: chromosome count, review state, karyotype, a "not analysable" mark and a comment.
For the case: cells counted / analysed (every label confirmed) / karyotyped (chosen for the
report), the modal number and the distribution of counts, the cells per karyotype, the sex,
and the case karyotype in ISCN 2020 with the cell count of each cell line in brackets.

Cell lines follow ISCN's definition of a clone, change by change: a gain (or the same
structural change) in at least two cells, a loss in at least three. A change in fewer cells (a
chromosome lost while the metaphase was spread, one misread) is non-clonal: the cell is counted
in the line its clonal changes make (``44,X,-21`` beside two ``45,X`` cells is a third 45,X
cell), and its karyotype is listed as non-clonal and warned about, never reported as a finding. Several lines make
a mosaic, written ``mos 47,XX,+21[6]/46,XX[14]``: abnormal lines first, the largest first,
the normal line last; 46,XX beside 46,XY is a chimera, ``chi 46,XX[15]/46,XY[5]``, when at
least two cells show each sex.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .document import Karyotype, now_iso
from .errors import InputError
from .karyotype import counts_cost, iscn_string, normal_sex_costs
from .labels import AUTOSOMES, CLASSES
from .limits import MAX_SESSION_BYTES
from .safe_read import read_json

# standard practice (e.g. ACMG / ACC guidelines for constitutional studies)
MIN_COUNTED, MIN_ANALYSED, MIN_KARYOTYPED = 20, 5, 2
NORMAL = ("46,XX", "46,XY")
# nats: a cell whose labels give another cell's reading up by no more than this is doubted when the
# case karyotype hangs on it (``CaseSummary.doubts``); 4 nats is the assignment's own price of a
# gain or a loss, what the labels must pay to call a cell abnormal
DOUBT_NATS = 4.0
_CHANGE = re.compile(r"^([+-])(\d{1,2}|[XY])$")


@dataclass
class CellEntry:
    image: str
    count: int
    iscn: str
    reviewed: bool  # every chromosome's label confirmed (analysed band by band)
    confirmed: int
    not_analysable: bool = False
    comment: str = ""
    in_report: bool = False  # its karyogram goes into the report (karyotyped)
    reviewers: tuple[str, ...] = ()
    last_confirmed: str = ""
    # nats: how well the cell's labels fit 46,XX and 46,XY (``normal_sex_costs``); breaks a tie
    # between as many cells of each sex, where the count of cells cannot decide
    sex_costs: dict[str, float] = field(default_factory=dict)
    # the classifier's probabilities of the cell's chromosomes (N x 24) and the confirmed labels
    # among them: what the case needs to weigh another reading of the cell (``CaseSummary.doubts``)
    probabilities: np.ndarray | None = field(default=None, repr=False)
    fixed: dict[int, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_doc(cls, doc: Karyotype, in_report: bool | None = None) -> "CellEntry":
        chromosomes = doc.chromosomes()
        confirmed = [r for r in chromosomes if r.confirmed]
        scored = [r for r in chromosomes if r.probabilities is not None]
        probs = np.array([r.probabilities for r in scored])
        fixed = {i: r.final for i, r in enumerate(scored) if r.confirmed}
        sex_costs = normal_sex_costs(probs, fixed) if scored else {}
        return cls(image=Path(doc.image_path).name, count=len(chromosomes), iscn=iscn_string(doc.counts()),
                   reviewed=bool(chromosomes) and len(confirmed) == len(chromosomes), confirmed=len(confirmed),
                   not_analysable=doc.not_analysable, comment=doc.comment,
                   in_report=doc.in_report if in_report is None else in_report,
                   reviewers=tuple(sorted({r.confirmed_by for r in confirmed if r.confirmed_by})),
                   last_confirmed=max((r.confirmed_at or "" for r in confirmed), default=""), sex_costs=sex_costs,
                   probabilities=probs if len(scored) == len(chromosomes) else None, fixed=fixed)

    def to_json(self) -> dict:
        return {"image": self.image, "count": self.count, "iscn": self.iscn, "reviewed": self.reviewed,
                "confirmed": self.confirmed, "not_analysable": self.not_analysable, "comment": self.comment,
                "in_report": self.in_report}


def changes(iscn: str) -> tuple[str, str, tuple[str, ...]]:
    """``47,XY,+21`` -> ("47", "XY", ("+21",))."""
    parts = iscn.split(",")
    return parts[0], parts[1] if len(parts) > 1 else "", tuple(parts[2:])


def is_clone(iscn: str, n_cells: int) -> bool:
    """ISCN: a gain (or any other change) in two cells, a loss in three, makes a cell line."""
    _, sex, found = changes(iscn)
    if not found and sex in ("XX", "XY"):
        return True  # no numerical change: the normal line
    gains = any(c.startswith("+") for c in found) or len(sex) > 2
    return n_cells >= (2 if gains else 3)


def karyotype_counts(iscn: str) -> dict[str, int] | None:
    """``45,XY,-14`` -> chromosomes per label (None when the string is not a numerical karyotype)."""
    total, sex, found = changes(iscn)
    counts = {label: 2 for label in AUTOSOMES}
    counts["X"], counts["Y"] = sex.count("X"), sex.count("Y")
    if len(sex) != counts["X"] + counts["Y"]:
        return None
    for change in found:
        m = _CHANGE.match(change)
        if m is None or m.group(2) not in counts:
            return None
        counts[m.group(2)] += 1 if m.group(1) == "+" else -1
    if not total.isdigit() or int(total) != sum(counts.values()) or min(counts.values()) < 0:
        return None
    return {label: counts[label] for label in CLASSES}


def _karyotype(sex: str, autosomal: list[str]) -> str:
    """The ISCN string of a normal cell with this sex complement and these autosomal changes."""
    counts = {label: 2 for label in AUTOSOMES}
    counts["X"], counts["Y"] = sex.count("X"), sex.count("Y")
    for change in autosomal:
        if change[1:] in counts:
            counts[change[1:]] += 1 if change.startswith("+") else -1
    return iscn_string(counts)


def case_iscn(lines: list[tuple[str, int]]) -> str:
    """The case karyotype from its cell lines (karyotype, cells): one line plainly, several as a
    mosaic with the abnormal lines first (largest first) and the normal line last."""
    if not lines:
        return ""
    if len(lines) == 1:
        return lines[0][0]
    normal = [(k, n) for k, n in lines if k in NORMAL]
    if len(normal) == 2:  # 46,XX and 46,XY cells: a chimera (or two samples mixed up), never a mosaic
        ordered = sorted(lines, key=lambda kn: (kn[0] in NORMAL, -kn[1], kn[0]))
        return "chi " + "/".join(f"{k}[{n}]" for k, n in ordered)
    abnormal = sorted(((k, n) for k, n in lines if k not in NORMAL), key=lambda kn: (-kn[1], kn[0]))
    return "mos " + "/".join(f"{k}[{n}]" for k, n in abnormal + normal)


@dataclass
class CaseSummary:
    case_id: str
    cells: list[CellEntry] = field(default_factory=list)

    @property
    def counted(self) -> list[CellEntry]:
        return [c for c in self.cells if not c.not_analysable]

    @property
    def analysed(self) -> list[CellEntry]:
        return [c for c in self.counted if c.reviewed]

    @property
    def karyotyped(self) -> list[CellEntry]:
        return [c for c in self.analysed if c.in_report]

    def doubts(self) -> list[dict]:
        """Cells the case karyotype hangs on: a cell that another cell of the same chromosome count
        reads differently, whose own labels give that other reading up by at most ``DOUBT_NATS``
        (``counts_cost``), and with which the case karyotype would change — the 13 called a 14 in
        one cell of three that lost an acrocentric. Each: ``image``, ``reads``, ``could_read``,
        ``nats``, ``case_would_read``. Confirmed labels are never doubted (they rule the other
        reading out)."""
        cells = self.counted
        now = self.iscn()
        out = []
        for i, cell in enumerate(cells):
            others = sorted({c.iscn for c in cells if c.count == cell.count and c.iscn != cell.iscn})
            own = karyotype_counts(cell.iscn)
            if not others or cell.probabilities is None or own is None:
                continue
            base = counts_cost(cell.probabilities, own, cell.fixed)
            for other in others:
                want = karyotype_counts(other)
                nats = counts_cost(cell.probabilities, want, cell.fixed) - base if want is not None else float("inf")
                if not nats <= DOUBT_NATS:  # inf - inf is nan: no doubt either
                    continue
                moved = cells[:i] + [replace(cell, iscn=other, sex_costs={})] + cells[i + 1:]
                would = CaseSummary(self.case_id, moved).iscn()
                if would != now:
                    out.append({"image": cell.image, "reads": cell.iscn, "could_read": other,
                                "nats": round(max(nats, 0.0), 2), "case_would_read": would})
        return out

    def lines(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(cell lines, non-clonal karyotypes), each as (karyotype, number of cells)."""
        cells = [c.iscn for c in self.counted]
        sexes = Counter(changes(k)[1] for k in cells)
        main_sex = self.main_sex()
        if main_sex is None:  # no cell with a normal sex complement: whole karyotypes as they are
            return self._whole_karyotype_lines()
        # the sex complement counts as a change against the main one: the other normal sex or an
        # extra X or Y is a gain (two cells), a missing one a loss (three)
        clonal_sex = {x for x, n in sexes.items()
                      if x == main_sex or n >= (2 if x.count("X") + x.count("Y") >= 2 else 3)}
        seen = Counter(c for k in cells for c in set(changes(k)[2]))
        clonal = {c for c, n in seen.items() if n >= (2 if not c.startswith("-") else 3)}
        reduced = []
        for k in cells:
            _, sex, found = changes(k)
            reduced.append(_karyotype(sex if sex in clonal_sex else main_sex, [c for c in found if c in clonal]))
        lines = Counter(reduced).most_common()
        other = Counter(k for k, r in zip(cells, reduced) if k != r).most_common()
        return lines, other

    def main_sex(self) -> str | None:
        """XX or XY: the normal sex complement of the most cells (None when no cell has one). As many
        cells of each (one misread X or Y in a two-cell case) are weighed by the cells' evidence,
        their summed ``sex_costs``: the constitutional sex is one for the whole case."""
        sexes = Counter(changes(c.iscn)[1] for c in self.counted)
        normal = [(x, n) for x, n in sexes.most_common() if f"46,{x}" in NORMAL]
        if not normal:
            return None
        tied = [x for x, n in normal if n == normal[0][1]]
        if len(tied) == 2:
            evidence = [c.sex_costs for c in self.counted if set(c.sex_costs) >= set(tied)]
            if evidence:
                totals = {x: sum(e[x] for e in evidence) for x in tied}
                if totals[tied[0]] != totals[tied[1]]:
                    return min(tied, key=totals.__getitem__)
        return tied[0]

    def _whole_karyotype_lines(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        ranked = Counter(c.iscn for c in self.counted).most_common()
        main_normal = next((k for k, _ in ranked if k in NORMAL), None)

        def line(k: str, n: int) -> bool:
            # the other sex's normal karyotype is a gain of X or Y against the main line: a
            # chimera's second line needs two cells like any gain (one is a mislabelled sex
            # chromosome or a stray cell far more often than a chimera)
            return is_clone(k, n) and (k == main_normal or k not in NORMAL or n >= 2)

        return [(k, n) for k, n in ranked if line(k, n)], [(k, n) for k, n in ranked if not line(k, n)]

    def iscn(self) -> str:
        clonal, other = self.lines()
        if not clonal and other:  # nothing clonal: report the cells' modal karyotype
            modal = Counter(c.count for c in self.counted).most_common(1)[0][0]
            sexes = Counter(changes(c.iscn)[1] for c in self.counted if c.count == modal)
            return f"{modal},{sexes.most_common(1)[0][0]}"
        return case_iscn(clonal)

    def warnings(self, doubts: list[dict] | None = None) -> list[str]:
        out = []  # the doubts first: the most a reviewer can act on
        for d in self.doubts() if doubts is None else doubts:
            out.append(f"{d['image']} reads {d['reads']}, or {d['could_read']} as another cell does "
                       f"({d['nats']:.1f} nats apart): the case would then read {d['case_would_read']}; compare before reporting")
        n_counted, n_analysed, n_karyo = len(self.counted), len(self.analysed), len(self.karyotyped)
        if n_counted < MIN_COUNTED:
            out.append(f"{n_counted} cells counted: the standard is at least {MIN_COUNTED}")
        if n_analysed < MIN_ANALYSED:
            out.append(f"{n_analysed} cells analysed (every label confirmed): the standard is at least {MIN_ANALYSED}")
        if n_karyo < MIN_KARYOTYPED:
            out.append(f"{n_karyo} cells karyotyped (karyogram in the report): the standard is at least {MIN_KARYOTYPED}")
        _, other = self.lines()
        for k, n in other:
            out.append(f"{k} in {n} cell{'s' if n > 1 else ''} only: not a cell line (ISCN needs 2 cells for a gain, "
                       "3 for a loss); count more cells before reporting it")
        return out

    def to_json(self) -> dict:
        clonal, other = self.lines()
        counts = Counter(c.count for c in self.counted)
        sexes = Counter(changes(c.iscn)[1] for c in self.counted)
        doubts = self.doubts()
        return {
            "case": self.case_id, "iscn": self.iscn(),
            "cells": [c.to_json() for c in self.cells],
            "summary": {
                "cells": len(self.cells), "counted": len(self.counted), "analysed": len(self.analysed),
                "karyotyped": len(self.karyotyped), "not_analysable": len(self.cells) - len(self.counted),
                "modal_number": counts.most_common(1)[0][0] if counts else None,
                "count_distribution": {str(k): v for k, v in sorted(counts.items())},
                "cell_lines": [{"karyotype": k, "cells": n} for k, n in clonal],
                "non_clonal": [{"karyotype": k, "cells": n} for k, n in other],
                "sex_chromosomes": self.main_sex() or (sexes.most_common(1)[0][0] if sexes else None),
                "doubtful_readings": doubts,
                "warnings": self.warnings(doubts),
            },
        }


# -- sign-off ---------------------------------------------------------------------------------
CASE_FILE = ".chromodesk-case.json"


def case_file(folder: str | Path) -> Path:
    return Path(folder) / CASE_FILE


def case_state(folder: str | Path) -> dict:
    """``{"signed_off": {"by", "at"} | None, "history": [{"action", "by", "at", "reason"}]}``."""
    path = case_file(folder)
    if not path.is_file():
        return {"signed_off": None, "history": []}
    try:  # the safe reader: size limit, no runaway nesting or numbers
        data = read_json(path, MAX_SESSION_BYTES, "case file")
    except InputError as exc:
        raise InputError(path, f"case file is damaged ({exc.problem})") from None
    if not isinstance(data, dict) or not isinstance(data.get("history", []), list):
        raise InputError(path, "not a ChromoDesk case file")
    signed = data.get("signed_off")
    if signed is not None and not (isinstance(signed, dict) and isinstance(signed.get("by"), str)):
        raise InputError(path, "case file: signed_off must name who signed")
    return {"signed_off": signed, "history": data.get("history", [])}


def _record(folder: str | Path, action: str, reviewer: str, reason: str = "") -> dict:
    if not reviewer.strip():
        raise ValueError("a sign-off or reopening needs the reviewer's name")
    state = case_state(folder)
    entry = {"action": action, "by": reviewer.strip(), "at": now_iso(), "reason": reason}
    state["history"].append(entry)
    state["signed_off"] = {"by": entry["by"], "at": entry["at"]} if action == "sign-off" else None
    atomic_write_text(case_file(folder), json.dumps(state, indent=1, ensure_ascii=False) + "\n")
    return state


def sign_off(folder: str | Path, reviewer: str) -> dict:
    """Lock the case: edits afterwards need an explicit reopening, which is recorded."""
    return _record(folder, "sign-off", reviewer)


def reopen(folder: str | Path, reviewer: str, reason: str = "") -> dict:
    return _record(folder, "reopen", reviewer, reason)
