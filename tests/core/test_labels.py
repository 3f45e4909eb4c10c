"""Label names as other labs write them, mapped to the 24 classes."""

from __future__ import annotations

import pytest

from chromodesk.core.labels import CLASSES, DENVER_GROUPS, GROUP_OF, KARYOGRAM_ROWS, denver_name, normalize_label


@pytest.mark.parametrize(
    "written, label",
    [
        # Denver names, as in the Tseng 2023 VOC files
        ("A1", "1"), ("A3", "3"), ("B4", "4"), ("B5", "5"), ("C6", "6"), ("C12", "12"), ("D13", "13"),
        ("E18", "18"), ("F19", "19"), ("F20", "20"), ("G21", "21"), ("G22", "22"),
        ("a1", "1"), ("c7", "7"), (" C7 ", "7"), ("C07", "7"),
        # plain names
        ("1", "1"), ("7", "7"), ("22", "22"), ("07", "7"), ("X", "X"), ("Y", "Y"), ("x", "X"), ("y", "Y"),
        # chr-prefixed names
        ("chr1", "1"), ("chr7", "7"), ("Chr22", "22"), ("chrX", "X"), ("ChrX", "X"), ("chry", "Y"),
        ("CHR7", "7"), ("chr_7", "7"), ("chr-7", "7"), ("chr 7", "7"), ("chromosome 7", "7"), ("Chromosome_X", "X"),
    ],
)
def test_known_names(written, label):
    assert normalize_label(written) == label


@pytest.mark.parametrize(
    "written",
    [
        "A4",  # 4 is group B: a wrong group letter is a typo we must not guess at
        "B3", "C13", "G1", "E15",
        "H1", "0", "23", "chr23", "chr0", "marker", "mar1", "XX", "XY", "", "   ", "7a", "A", "chr", "C X",
    ],
)
def test_unknown_names(written):
    assert normalize_label(written) is None


def test_none_is_unknown():
    assert normalize_label(None) is None


def test_every_denver_name_round_trips():
    for label in CLASSES:
        assert normalize_label(denver_name(label)) == label
        assert normalize_label(label) == label


@pytest.mark.parametrize("label, name", [("1", "A1"), ("5", "B5"), ("7", "C7"), ("15", "D15"), ("18", "E18"),
                                         ("20", "F20"), ("22", "G22"), ("X", "X"), ("Y", "Y")])
def test_denver_name(label, name):
    assert denver_name(label) == name


def test_classes_groups_and_layout_are_consistent():
    assert len(CLASSES) == 24 and CLASSES[-2:] == ("X", "Y")
    assert sorted(c for cs in DENVER_GROUPS.values() for c in cs) == sorted(CLASSES[:22])
    assert (GROUP_OF["X"], GROUP_OF["Y"]) == ("C", "G")
    laid_out = [c for row in KARYOGRAM_ROWS for c in row]
    assert sorted(laid_out) == sorted(CLASSES) and len(laid_out) == 24
