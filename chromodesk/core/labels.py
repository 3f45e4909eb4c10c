"""The 24 chromosome classes, their Denver groups and the karyogram layout."""

from __future__ import annotations

import re

CLASSES: tuple[str, ...] = tuple([str(i) for i in range(1, 23)] + ["X", "Y"])
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
AUTOSOMES = CLASSES[:22]

DENVER_GROUPS: dict[str, tuple[str, ...]] = {
    "A": ("1", "2", "3"),
    "B": ("4", "5"),
    "C": ("6", "7", "8", "9", "10", "11", "12"),
    "D": ("13", "14", "15"),
    "E": ("16", "17", "18"),
    "F": ("19", "20"),
    "G": ("21", "22"),
}
GROUP_OF = {c: g for g, cs in DENVER_GROUPS.items() for c in cs}
GROUP_OF["X"] = "C"  # X is C-group sized; Y is G-group sized (ISCN convention)
GROUP_OF["Y"] = "G"

# ISCN karyogram rows: 1-5 / 6-12 + X / 13-18 / 19-22 + Y
KARYOGRAM_ROWS: tuple[tuple[str, ...], ...] = (
    ("1", "2", "3", "4", "5"),
    ("6", "7", "8", "9", "10", "11", "12", "X"),
    ("13", "14", "15", "16", "17", "18"),
    ("19", "20", "21", "22", "Y"),
)

_DENVER = re.compile(r"^([A-G])(\d{1,2})$")
_PLAIN = re.compile(r"^(?:chr(?:omosome)?[\s_-]*)?(\d{1,2}|X|Y)$", re.IGNORECASE)


def normalize_label(name: str) -> str | None:
    """Map a label as written in annotation files to one of CLASSES, or None if unknown.

    Accepts Denver names (``A1`` … ``G22``, only with the right group letter), plain
    names (``1`` … ``22``, ``X``, ``Y``) and ``chr``-prefixed names (``chr7``, ``ChrX``).
    """
    text = (name or "").strip()
    m = _DENVER.match(text.upper())
    if m:
        number = str(int(m.group(2)))
        return number if GROUP_OF.get(number) == m.group(1) and number in AUTOSOMES else None
    m = _PLAIN.match(text)
    if m:
        value = m.group(1).upper()
        value = value if value in ("X", "Y") else str(int(value))
        return value if value in CLASS_INDEX else None
    return None


def denver_name(label: str) -> str:
    """``7`` -> ``C7``; ``X`` -> ``X`` (the naming used by the Tseng 2023 VOC files)."""
    return label if label in ("X", "Y") else f"{GROUP_OF[label]}{label}"
