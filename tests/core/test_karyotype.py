"""Cell-level assignment: impossible cells are fixed, real aneuploidies survive, ISCN is valid."""

from __future__ import annotations

import re

import numpy as np
import pytest

from chromodesk.core.karyotype import analyse_cell, assign, is_numerically_abnormal, iscn_string
from chromodesk.core.labels import AUTOSOMES, CLASS_INDEX, CLASSES

ISCN = re.compile(r"^(4[3-9]|50),(X{0,3}Y{0,2}|--)(,[+-](\d{1,2}))*$")


def cell_probs(labels, confidence=0.8, rng=None):
    probs = np.full((len(labels), len(CLASSES)), (1 - confidence) / (len(CLASSES) - 1))
    for i, label in enumerate(labels):
        probs[i, CLASS_INDEX[label]] = confidence
    return probs


def normal(sex=("X", "Y")):
    return [c for c in AUTOSOMES for _ in range(2)] + list(sex)


def test_impossible_cell_is_corrected():
    labels = normal()
    probs = cell_probs(labels)
    # one 10 looks slightly more like a 9: independent labels give three 9s and one 10
    i = labels.index("10")
    probs[i, CLASS_INDEX["9"]], probs[i, CLASS_INDEX["10"]] = 0.5, 0.4
    assert CLASSES[probs[i].argmax()] == "9"
    result = analyse_cell(probs)
    assert result.assigned[i] == "10"
    assert result.iscn == "46,XY" and not is_numerically_abnormal(result.flags)


@pytest.mark.parametrize("extra, iscn", [(["21"], "47,XY,+21"), (["18"], "47,XY,+18"), (["13"], "47,XY,+13")])
def test_confident_trisomy_is_flagged_not_corrected(extra, iscn):
    result = analyse_cell(cell_probs(normal() + extra, 0.9))
    assert result.iscn == iscn
    assert {"type": "gain", "label": extra[0], "count": 3} in result.flags


@pytest.mark.parametrize("sex, iscn", [(("X",), "45,X"), (("X", "X", "Y"), "47,XXY"), (("X", "Y", "Y"), "47,XYY")])
def test_sex_chromosome_aneuploidies(sex, iscn):
    result = analyse_cell(cell_probs(normal(sex), 0.9))
    assert result.iscn == iscn
    assert any(f["type"] == "sex" for f in result.flags)


def test_confirmed_labels_are_constraints():
    labels = normal(("X", "X"))
    probs = cell_probs(labels)
    fixed = {0: "2"}  # the technician says the first "1" is a 2
    result = analyse_cell(probs, fixed=fixed)
    assert result.assigned[0] == "2"


@pytest.mark.parametrize("n", range(43, 51))
def test_every_cell_size_from_43_to_50_gives_a_valid_iscn(n):
    rng = np.random.default_rng(n)
    labels = normal()
    while len(labels) < n:
        labels.append(AUTOSOMES[int(rng.integers(0, 22))])
    labels = labels[:n]
    probs = rng.dirichlet(np.ones(len(CLASSES)) * 0.3, size=n) * 0.4 + cell_probs(labels, 0.6) * 0.6
    result = analyse_cell(probs)
    assert len(result.assigned) == n and None not in result.assigned
    assert sum(result.counts.values()) == n
    assert ISCN.match(result.iscn), result.iscn
    assert ISCN.match(iscn_string(result.counts))


def test_empty_cell():
    labels, sex, _ = assign(np.zeros((0, 24)))
    assert labels == []


def test_a_correction_never_moves_another_chromosome_to_a_label_it_finds_unlikely():
    """Confirming a 10 as a 9 makes three 9s. Moving a sure 9 (p 0.95, p(10) 0.002) to 10 would hide
    the correction; the cell shows +9/-10 instead (issue: a correction silently relabelled another)."""
    labels = normal()
    probs = cell_probs(labels, confidence=0.95)
    ten = labels.index("10")
    out = analyse_cell(probs, fixed={ten: "9"})
    assert [out.assigned[i] for i, lab in enumerate(labels) if lab == "9"] == ["9", "9"]
    assert out.iscn == "46,XY,+9,-10"
    # a chromosome that is nearly as much a 10 as a 9 may still move: that is what the assignment is for
    probs2 = probs.copy()
    nine = labels.index("9")
    probs2[nine, CLASS_INDEX["9"]], probs2[nine, CLASS_INDEX["10"]] = 0.5, 0.45
    out2 = analyse_cell(probs2, fixed={ten: "9"})
    assert out2.assigned[nine] == "10" and out2.iscn == "46,XY"


def test_a_rejected_box_the_cell_needs_comes_back():
    """A real 21 turned down as "not a chromosome" just above the threshold fills the slot its cell
    leaves empty, so it comes back; a box far above the threshold, one the cell has no room for,
    and any box in a fragment of a cell stay turned down."""
    from chromodesk.core.karyotype import logit, rescue_rejected

    labels = normal()
    probs = cell_probs(labels, confidence=0.95)
    i21 = labels.index("21")
    threshold = 0.981

    def margin(reject_p):
        return np.array([max(0.0, logit(p) - logit(threshold)) for p in reject_p])

    reject_p = np.full(len(labels), 0.01)
    rejected = np.zeros(len(labels), bool)
    reject_p[i21], rejected[i21] = 0.985, True
    assert not rescue_rejected(probs, margin(reject_p), rejected)[i21]
    reject_p[i21] = 0.99999  # the network is sure: the empty slot does not outweigh it
    assert rescue_rejected(probs, margin(reject_p), rejected)[i21]
    # an extra box (47 boxes) whose slot is already filled twice stays out
    extra = np.vstack([probs, probs[i21]])
    reject_p2 = np.append(np.full(len(labels), 0.01), 0.985)
    rejected2 = np.append(np.zeros(len(labels), bool), True)
    assert rescue_rejected(extra, margin(reject_p2), rejected2)[-1]
    few = slice(i21 - 20, i21 + 2)  # 22 boxes, the 21 among them
    reject_p[i21] = 0.985
    assert rescue_rejected(probs[few], margin(reject_p)[few], rejected[few])[20]


def test_a_doubtful_detection_comes_in_only_where_the_cell_has_room():
    """Boxes the detector scored under its threshold (a crossing partner it half saw) join the
    cell when they fill its empty slot and the detector was not too sure against them; a doubtful
    box whose label the cell already holds twice stays out, and so does a very low score."""
    from chromodesk.core.karyotype import doubt_nats, rescue_rejected

    labels = normal()
    probs = cell_probs(labels, confidence=0.95)
    i7 = labels.index("7")
    cell = np.delete(probs, i7, axis=0)  # the detector kept 45: one 7 missing
    candidates = np.vstack([probs[i7], probs[labels.index("12")]])  # the missed 7, and a third 12
    allp = np.vstack([cell, candidates])
    rejected = np.r_[np.zeros(len(cell), bool), True, True]
    doubt = np.r_[np.zeros(len(cell)), doubt_nats(0.3, 0.4), doubt_nats(0.3, 0.4)]
    out = rescue_rejected(allp, doubt, rejected)
    assert not out[-2] and out[-1]  # the 7 comes in, the third 12 stays out
    assert doubt_nats(0.5, 0.4) == 0.0 and doubt_nats(0.3, 0.4) > 0
    doubt[-2] = doubt_nats(1e-4, 0.4)  # the detector all but said no: more than a loss is worth
    assert rescue_rejected(allp, doubt, rejected)[-2]
