"""The case: cell lines by ISCN's clone rule, mosaic notation, the standard cell numbers."""

from __future__ import annotations

import numpy as np
import pytest

from chromodesk.core.case import CaseSummary, CellEntry, case_iscn, is_clone


def cells(spec: dict[str, int], reviewed: int = 0, in_report: int = 0) -> list[CellEntry]:
    out = []
    for iscn, n in spec.items():
        for _ in range(n):
            out.append(CellEntry(image=f"{len(out)}.jpg", count=int(iscn.split(",")[0]), iscn=iscn,
                                 reviewed=len(out) < reviewed, confirmed=0, in_report=len(out) < in_report))
    return out


@pytest.mark.parametrize("spec, expected", [
    ({"46,XX": 20}, "46,XX"),
    ({"47,XY,+21": 3}, "47,XY,+21"),
    # ISCN 2020 mosaic examples: abnormal line(s) first, largest first, normal last, cells in brackets
    ({"47,XX,+21": 6, "46,XX": 14}, "mos 47,XX,+21[6]/46,XX[14]"),
    ({"45,X": 15, "46,XX": 5}, "mos 45,X[15]/46,XX[5]"),
    ({"47,XXY": 10, "46,XY": 10}, "mos 47,XXY[10]/46,XY[10]"),
    ({"45,X": 12, "47,XXX": 5, "46,XX": 3}, "mos 45,X[12]/47,XXX[5]/46,XX[3]"),
    ({"48,XY,+13,+21": 4, "46,XY": 16}, "mos 48,XY,+13,+21[4]/46,XY[16]"),
    ({"46,XX": 15, "46,XY": 5}, "chi 46,XX[15]/46,XY[5]"),
])
def test_case_karyotypes_follow_iscn(spec, expected):
    assert CaseSummary("c", cells(spec)).iscn() == expected


def test_a_single_cell_is_not_a_cell_line():
    summary = CaseSummary("c", cells({"46,XY": 19, "47,XY,+9": 1, "45,XY,-7": 2}))
    assert summary.iscn() == "46,XY"
    text = " ".join(summary.warnings())
    assert "47,XY,+9 in 1 cell only" in text and "45,XY,-7 in 2 cells only" in text
    assert not is_clone("45,XY,-7", 2) and is_clone("45,XY,-7", 3) and is_clone("47,XY,+9", 2)
    assert not is_clone("45,X", 2) and is_clone("47,XXY", 2)


def test_one_cell_of_the_other_sex_is_not_a_chimera():
    summary = CaseSummary("c", cells({"46,XY": 2, "46,XX": 1}))
    assert summary.iscn() == "46,XY"
    assert any("46,XX in 1 cell only" in w for w in summary.warnings())
    assert CaseSummary("c", cells({"46,XY": 2, "46,XX": 2})).iscn() == "chi 46,XX[2]/46,XY[2]"
    assert CaseSummary("c", cells({"45,X": 3, "46,XY": 1})).iscn() == "mos 45,X[3]/46,XY[1]"


def test_summary_counts_and_the_standard_numbers():
    entries = cells({"46,XX": 4, "45,XX,-3": 1}, reviewed=3, in_report=1)
    entries.append(CellEntry("bad.jpg", 38, "38,XX", False, 0, not_analysable=True))
    s = CaseSummary("c7", entries).to_json()
    summary = s["summary"]
    assert (summary["cells"], summary["counted"], summary["analysed"], summary["karyotyped"]) == (6, 5, 3, 1)
    assert summary["modal_number"] == 46 and summary["count_distribution"] == {"45": 1, "46": 4}
    assert summary["not_analysable"] == 1 and summary["sex_chromosomes"] == "XX"
    w = " ".join(summary["warnings"])
    assert "5 cells counted" in w and "3 cells analysed" in w and "1 cells karyotyped" in w
    assert s["iscn"] == "46,XX" and [c["image"] for c in s["cells"]][-1] == "bad.jpg"


def test_case_iscn_of_nothing_is_empty():
    assert case_iscn([]) == "" and CaseSummary("c").iscn() == ""


def test_sign_off_locks_and_reopening_is_recorded(tmp_path):
    from chromodesk.core.case import case_state, reopen, sign_off

    assert case_state(tmp_path) == {"signed_off": None, "history": []}
    state = sign_off(tmp_path, "Dr. A")
    assert state["signed_off"]["by"] == "Dr. A"
    state = reopen(tmp_path, "Dr. B", "late correction of cell 3")
    assert state["signed_off"] is None
    back = case_state(tmp_path)
    assert [(h["action"], h["by"]) for h in back["history"]] == [("sign-off", "Dr. A"), ("reopen", "Dr. B")]
    assert back["history"][1]["reason"] == "late correction of cell 3"
    with pytest.raises(ValueError):
        sign_off(tmp_path, "  ")


def test_a_damaged_case_file_is_refused_naming_it(tmp_path):
    from chromodesk.core.case import CASE_FILE, case_state
    from chromodesk.core.errors import InputError

    (tmp_path / CASE_FILE).write_text("{broken")
    with pytest.raises(InputError, match="case file is damaged") as err:
        case_state(tmp_path)
    assert CASE_FILE in str(err.value)


def test_cell_lines_are_made_change_by_change():
    """ISCN's clone rule applies to each change, not to whole karyotypes: a cell of a clone that
    also lost a chromosome at random still counts in its clone, and cells whose only changes are
    non-clonal count in the normal line; their karyotypes are listed as non-clonal."""
    summary = CaseSummary("c", cells({"45,XY,-21": 1, "44,X,-21": 1, "45,X": 2, "45,XY,-8": 1}))
    assert summary.iscn() == "mos 45,X[3]/46,XY[2]"
    clonal, other = summary.lines()
    assert dict(other) == {"45,XY,-21": 1, "44,X,-21": 1, "45,XY,-8": 1}
    assert any("44,X,-21 in 1 cell only" in w for w in summary.warnings())
    # a loss in three cells is a line even when those cells differ otherwise
    three = CaseSummary("c", cells({"45,XX,-14": 1, "44,XX,-14,-20": 1, "46,XX,-14,+9": 1, "46,XX": 2}))
    assert three.iscn() == "mos 45,XX,-14[3]/46,XX[2]"
    # a gain in two cells, one of them with a random loss besides
    assert CaseSummary("c", cells({"47,XY,+21": 1, "46,XY,+21,-5": 1, "46,XY": 3})).iscn() == "mos 47,XY,+21[2]/46,XY[3]"
    # random losses in single cells leave a normal case normal
    assert CaseSummary("c", cells({"46,XX": 3, "45,XX,-4": 1, "45,X": 1, "45,XX,-19": 1})).iscn() == "46,XX"


def _probs(y_evidence: float):
    """A 46-chromosome cell's probabilities: sure autosomes, two sex chromosomes of which the
    second reads Y with probability ``y_evidence`` (X otherwise)."""
    import numpy as np

    from chromodesk.core.labels import AUTOSOMES, CLASS_INDEX

    rows = []
    for label in AUTOSOMES:
        for _ in range(2):
            row = np.full(24, 0.001)
            row[CLASS_INDEX[label]] = 1.0
            rows.append(row)
    for y in (0.02, y_evidence):
        row = np.full(24, 0.001)
        row[CLASS_INDEX["Y"]], row[CLASS_INDEX["X"]] = y, 1.0 - y
        rows.append(row)
    probs = np.array(rows)
    return probs / probs.sum(1, keepdims=True)


def test_a_tie_between_the_sexes_goes_to_the_stronger_evidence():
    """Two cells, one read 46,XX and one 46,XY on a weak Y: the case is 46,XX, and the XY cell is
    listed as a single cell; a sure Y makes it 46,XY. More cells of one sex always win."""
    from chromodesk.core.karyotype import normal_sex_costs

    weak_y, sure_x, sure_y = normal_sex_costs(_probs(0.6)), normal_sex_costs(_probs(0.05)), \
        normal_sex_costs(_probs(0.999))
    assert weak_y["XY"] < weak_y["XX"] and sure_x["XX"] < sure_x["XY"]
    xy, xx = cells({"46,XY": 1, "46,XX": 1})
    xy.sex_costs, xx.sex_costs = weak_y, sure_x
    summary = CaseSummary("c", [xy, xx])
    assert summary.iscn() == "46,XX" and summary.to_json()["summary"]["sex_chromosomes"] == "XX"
    assert any("46,XY in 1 cell only" in w for w in summary.warnings())
    xy.sex_costs = sure_y
    assert CaseSummary("c", [xy, xx]).iscn() == "46,XY"
    # a confirmed Y rules 46,XX out for that cell
    confirmed_y = normal_sex_costs(_probs(0.6), fixed={45: "Y"})
    assert confirmed_y["XX"] == float("inf")
    three = cells({"46,XY": 2, "46,XX": 1})
    three[2].sex_costs = {"XX": 0.0, "XY": 1e6}
    assert CaseSummary("c", three).iscn() == "46,XY"


def _acrocentric_cell(p13_for_third: float, missing: str = "14"):
    """A 45-chromosome cell without one ``missing`` acrocentric: sure labels, except one real 13
    that the classifier reads as 13 with probability ``p13_for_third`` and as 14 otherwise."""
    import numpy as np

    from chromodesk.core.karyotype import analyse_cell
    from chromodesk.core.labels import AUTOSOMES, CLASS_INDEX

    labels = [label for label in AUTOSOMES for _ in range(2)] + ["X", "X"]
    labels.remove(missing)
    rows, ambiguous = [{"label": label} for label in labels], None
    probs = []
    for r in rows:
        p = np.full(24, 1e-4)
        if r["label"] == "13" and ambiguous is None:
            ambiguous = len(probs)
            p[CLASS_INDEX["13"]], p[CLASS_INDEX["14"]] = p13_for_third, 1 - p13_for_third
        else:
            p[CLASS_INDEX[r["label"]]] = 1.0
        probs.append(p / p.sum())
    probs = np.array(probs)
    analysis = analyse_cell(probs)
    return probs, analysis.iscn, ambiguous


def _entry(name: str, p13: float, fixed: dict | None = None) -> CellEntry:
    probs, iscn, _ = _acrocentric_cell(p13)
    return CellEntry(name, len(probs), iscn, False, 0, probabilities=probs, fixed=fixed or {})


def test_a_case_karyotype_that_hangs_on_a_doubtful_call_is_warned_about():
    """Three cells that lost a 14, one of which reads a 13 as a 14 at 55%: with a loss in two cells
    only, the case reads 46,XX — but had that cell been read as the others are (the 13 a 13, at
    0.2 nats), the case would read 45,XX,-14. The report says so and names the cell; a cell sure of
    its labels, or whose 14 the technician confirmed, raises no such doubt."""
    _, doubtful, ambiguous = _acrocentric_cell(0.45)
    assert doubtful == "45,XX,-13"  # on its own the cell reads a 13 as a 14
    case = [_entry("a.jpg", 0.999), _entry("b.jpg", 0.999), _entry("c.jpg", 0.45)]
    summary = CaseSummary("c", case)
    assert summary.iscn() == "46,XX"  # the cells' own readings are not changed
    [doubt] = summary.doubts()
    assert doubt == {"image": "c.jpg", "reads": "45,XX,-13", "could_read": "45,XX,-14",
                     "nats": pytest.approx(0.2, abs=0.01), "case_would_read": "45,XX,-14"}
    assert any(w.startswith("c.jpg reads 45,XX,-13, or 45,XX,-14 as another cell does (0.2 nats apart)")
               and "would then read 45,XX,-14" in w
               for w in summary.warnings())
    assert summary.to_json()["summary"]["doubtful_readings"] == [doubt]
    sure = [_entry("a.jpg", 0.999), _entry("b.jpg", 0.999), _entry("c.jpg", 1e-4)]
    assert sure[2].iscn == "45,XX,-13" and CaseSummary("c", sure).doubts() == []
    confirmed = [_entry("a.jpg", 0.999), _entry("b.jpg", 0.999), _entry("c.jpg", 0.45, fixed={ambiguous: "14"})]
    assert CaseSummary("c", confirmed).doubts() == []
    # a doubt that would not change the case karyotype is not raised: in two cells a loss is no line
    assert CaseSummary("c", case[1:]).iscn() == "46,XX" and CaseSummary("c", case[1:]).doubts() == []
    # with a fourth cell the -14 line holds three already; the doubtful cell decides the mosaic
    four = case + [_entry("d.jpg", 0.999)]
    assert CaseSummary("c", four).iscn() == "mos 45,XX,-14[3]/46,XX[1]"
    assert [d["case_would_read"] for d in CaseSummary("c", four).doubts()] == ["45,XX,-14"]


def test_counts_cost_weighs_a_reading():
    from chromodesk.core.case import karyotype_counts
    from chromodesk.core.karyotype import counts_cost

    probs, iscn, ambiguous = _acrocentric_cell(0.45)
    own, other = counts_cost(probs, karyotype_counts(iscn)), counts_cost(probs, karyotype_counts("45,XX,-14"))
    assert other - own == pytest.approx(np.log(0.55 / 0.45), abs=1e-3)
    assert counts_cost(probs, karyotype_counts("46,XX")) == float("inf")  # 45 chromosomes are not 46
    assert counts_cost(probs, karyotype_counts("45,XX,-14"), fixed={ambiguous: "14"}) == float("inf")
    assert karyotype_counts("47,XY,+21")["21"] == 3 and karyotype_counts("45,X")["Y"] == 0
    assert karyotype_counts("46,XY,+21") is None and karyotype_counts("not,a,karyotype") is None
