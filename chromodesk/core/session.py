"""Save and restore the reviewer's work on one cell as JSON.

The file records the image's SHA-256 so that a session is never applied to a different
(or re-saved, re-compressed) picture whose boxes would no longer match. Loading is
strict: anything unexpected is an InputError naming the file, never a silently partial
document.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .document import Box, Karyotype, now_iso
from .errors import InputError
from .labels import CLASSES
from .limits import MAX_OBJECTS, MAX_OUTLINE_POINTS, MAX_SESSION_BYTES
from .safe_read import read_json

SCHEMA_VERSION = 1
FORMAT_NAME = "chromodesk-session"
SESSION_SUFFIX = ".chromodesk.json"
_LABEL_FIELDS = ("file_label", "predicted", "assigned", "final")
_TEXT_FIELDS = ("file_name", "confirmed_by", "confirmed_at", "model_id")


def session_to_dict(doc: Karyotype) -> dict[str, Any]:
    records = []
    for r in doc:
        records.append({
            "id": r.id,
            "box": r.box.as_list(),
            "file_label": r.file_label,
            "file_name": r.file_name,
            "predicted": r.predicted,
            "probabilities": list(r.probabilities) if r.probabilities is not None else None,
            "assigned": r.assigned,
            "final": r.final,
            "confirmed_by": r.confirmed_by,
            "confirmed_at": r.confirmed_at,
            "model_id": r.model_id,
            "reject_probability": r.reject_probability,
            "auto_rejected": r.auto_rejected,
            "excluded": r.excluded,
            "origin": r.origin,
            "doubt": r.doubt,
            "angle": r.angle,
            "p_up": list(r.p_up) if r.p_up is not None else None,
            "turned": r.turned,
            "mirrored": r.mirrored,
            "outline": [list(point) for point in r.outline] if r.outline else None,
            "outline_by_hand": r.outline_by_hand,
        })
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "saved_at": now_iso(),
        "image": {"path": doc.image_path, "sha256": doc.image_sha256, "width": doc.width, "height": doc.height},
        "annotation_path": doc.annotation_path,
        "warnings": list(doc.warnings),
        "cell": {"not_analysable": doc.not_analysable, "comment": doc.comment, "in_report": doc.in_report,
                 "next_id": doc.next_id},
        "records": records,
    }


def save_session(doc: Karyotype, path: str | Path) -> Path:
    # allow_nan=False: a NaN probability would write JSON that other tools refuse
    text = json.dumps(session_to_dict(doc), indent=1, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def load_session(path: str | Path, expected_sha256: str | None = None) -> Karyotype:
    """Rebuild the document saved in ``path``; ``expected_sha256`` is the hash of the image now open."""
    path = Path(path)
    data = read_json(path, MAX_SESSION_BYTES, "session file")
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise InputError(path, "not a ChromoDesk session file")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise InputError(path, f"session schema version {version!r} is not supported (this ChromoDesk reads "
                               f"version {SCHEMA_VERSION}{'; it was saved by a newer ChromoDesk' if newer else ''})")
    reader = _Reader(path)
    image = reader.obj(data.get("image"), "image")
    sha = reader.text(image.get("sha256"), "image.sha256", optional=False)
    if expected_sha256 is not None and sha.lower() != expected_sha256.lower():
        raise InputError(path, f"session belongs to a different image (saved for sha256 {sha[:12]}..., "
                               f"the image now open is {expected_sha256[:12]}...); the image file has changed")
    doc = Karyotype(
        image_path=reader.text(image.get("path"), "image.path", optional=False),
        image_sha256=sha,
        width=reader.size(image.get("width"), "image.width"),
        height=reader.size(image.get("height"), "image.height"),
        annotation_path=reader.text(data.get("annotation_path"), "annotation_path"),
        warnings=[reader.text(w, "warnings", optional=False) for w in reader.items(data.get("warnings", []), "warnings")],
    )
    note = data.get("cell", {"not_analysable": False, "comment": ""})  # absent in older sessions
    note = reader.obj(note, "cell")
    for key in ("not_analysable", "in_report"):
        if not isinstance(note.get(key, False), bool):
            raise reader.fail(f"cell.{key}", "expected true or false")
    doc.not_analysable = note.get("not_analysable", False)
    doc.in_report = note.get("in_report", False)
    doc.comment = reader.text(note.get("comment", ""), "cell.comment", optional=False)
    records = reader.items(data.get("records"), "records")
    if len(records) > MAX_OBJECTS:
        raise reader.fail("records", f"holds {len(records):,} boxes; a cell has at most {MAX_OBJECTS} (corrupt or crafted)")
    for index, item in enumerate(records, start=1):
        where = f"record {index}"
        item = reader.obj(item, where)
        rid = reader.text(item.get("id"), f"{where}.id", optional=False)
        if rid in doc.records:
            raise InputError(path, f"duplicate chromosome id {rid!r}")
        fields: dict[str, Any] = {k: reader.label(item.get(k), f"{rid}.{k}") for k in _LABEL_FIELDS}
        fields.update({k: reader.text(item.get(k), f"{rid}.{k}") for k in _TEXT_FIELDS})
        fields["probabilities"] = reader.probabilities(item.get("probabilities"), f"{rid}.probabilities")
        fields.update(reader.reject_fields(item, rid))
        fields.update(reader.orientation_fields(item, rid))
        fields["outline"] = reader.outline(item.get("outline"), f"{rid}.outline", doc.width, doc.height)
        by_hand = item.get("outline_by_hand", False)  # absent in sessions saved before splitting and joining
        if not isinstance(by_hand, bool):
            raise reader.fail(f"{rid}.outline_by_hand", "expected true or false")
        fields["outline_by_hand"] = by_hand and fields["outline"] is not None
        origin = reader.text(item.get("origin"), f"{rid}.origin")
        if origin not in (None, "annotations", "detected", "drawn"):
            raise reader.fail(f"{rid}.origin", f"unknown box origin {origin!r}")
        fields["origin"] = origin
        doubt = item.get("doubt", 0.0)  # absent in sessions saved before the cell had a say in detection
        if not isinstance(doubt, (int, float)) or isinstance(doubt, bool) or not 0.0 <= doubt <= 100.0:
            raise reader.fail(f"{rid}.doubt", f"expected a number of nats from 0 to 100, found {doubt!r}")
        fields["doubt"] = float(doubt)
        doc.add(reader.box(item.get("box"), f"{rid}.box", doc.width, doc.height), record_id=rid, **fields)
    next_id = note.get("next_id", 1)  # absent before ids were kept apart across saves
    if not isinstance(next_id, int) or isinstance(next_id, bool) or not 1 <= next_id <= 10**6:
        raise reader.fail("cell.next_id", "expected a whole number from 1 to 1000000")
    doc.next_id = max(doc.next_id, next_id)  # never below what the records already use
    doc.revision = 0  # a freshly loaded document has no unsaved changes
    return doc


class _Reader:
    """Type checks with messages that say which field of which file is wrong."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str) -> InputError:
        return InputError(self.path, f"{where}: {problem}")

    def obj(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, "missing or not an object")
        return value

    def items(self, value, where: str) -> list:
        if not isinstance(value, list):
            raise self.fail(where, "missing or not a list")
        return value

    def text(self, value, where: str, optional: bool = True) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(where, f"expected text, found {value!r}")
        return value

    def label(self, value, where: str) -> str | None:
        if value is not None and value not in CLASSES:
            raise self.fail(where, f"unknown label {value!r}")
        return value

    def size(self, value, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(where, f"expected a positive whole number, found {value!r}")
        return value

    def box(self, value, where: str, width: int, height: int) -> Box:
        if (not isinstance(value, list) or len(value) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise self.fail(where, f"expected [xmin, ymin, xmax, ymax] in whole pixels, found {value!r}")
        box = Box(*value)
        if box.is_empty():
            raise self.fail(where, f"empty box {value!r} (xmax must exceed xmin, ymax ymin)")
        if box.xmin < 0 or box.ymin < 0 or box.xmax > width or box.ymax > height:
            raise self.fail(where, f"box {value!r} lies outside the image ({width}x{height})")
        return box

    def probabilities(self, value, where: str) -> tuple[float, ...] | None:
        if value is None:
            return None
        if (not isinstance(value, list) or len(value) != len(CLASSES)
                or not all(_number(p) for p in value)):
            raise self.fail(where, f"expected {len(CLASSES)} finite numbers")
        if not all(0.0 <= p <= 1.0 for p in value) or abs(sum(value) - 1.0) > 0.01:
            raise self.fail(where, "expected probabilities (each 0 to 1, summing to 1)")
        return tuple(float(p) for p in value)

    def reject_fields(self, item: dict, rid: str) -> dict:
        """The "not a chromosome" fields (absent in sessions saved before they existed)."""
        p = item.get("reject_probability")
        if p is not None and (not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0):
            raise self.fail(f"{rid}.reject_probability", f"expected a probability, found {p!r}")
        auto = item.get("auto_rejected", False)
        excluded = item.get("excluded")
        if not isinstance(auto, bool) or (excluded is not None and not isinstance(excluded, bool)):
            raise self.fail(rid, "auto_rejected / excluded must be true, false (or null for excluded)")
        return {"reject_probability": None if p is None else float(p), "auto_rejected": auto, "excluded": excluded}

    def outline(self, value, where: str, width: int, height: int) -> tuple[tuple[int, int], ...] | None:
        """A chromosome's outline: 3 to MAX_OUTLINE_POINTS [x, y] whole pixels inside the image
        (absent in sessions saved before masks existed)."""
        if value is None:
            return None
        if not isinstance(value, list) or not 3 <= len(value) <= MAX_OUTLINE_POINTS:
            raise self.fail(where, f"expected a list of 3 to {MAX_OUTLINE_POINTS} [x, y] points")
        for point in value:
            if (not isinstance(point, list) or len(point) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in point)):
                raise self.fail(where, f"expected [x, y] in whole pixels, found {point!r}")
            if not (0 <= point[0] <= width and 0 <= point[1] <= height):
                raise self.fail(where, f"point {point!r} lies outside the image ({width}x{height})")
        return tuple((x, y) for x, y in value)

    def orientation_fields(self, item: dict, rid: str) -> dict:
        """Which end is up (absent in sessions saved before the orientation network shipped) and
        the technician's mirror (absent before it existed: not mirrored)."""
        angle, p_up, turned = item.get("angle"), item.get("p_up"), item.get("turned")
        mirrored = item.get("mirrored", False)
        if angle is not None and not (_number(angle) and -180.0 <= angle <= 180.0):
            raise self.fail(f"{rid}.angle", f"expected an angle in degrees (-180 to 180), found {angle!r}")
        if p_up is not None and (not isinstance(p_up, list) or len(p_up) != len(CLASSES)
                                 or not all(_number(p) and 0.0 <= p <= 1.0 for p in p_up)):
            raise self.fail(f"{rid}.p_up", f"expected {len(CLASSES)} probabilities (each 0 to 1)")
        if turned is not None and not isinstance(turned, bool):
            raise self.fail(f"{rid}.turned", f"expected true, false or null, found {turned!r}")
        if not isinstance(mirrored, bool):
            raise self.fail(f"{rid}.mirrored", f"expected true or false, found {mirrored!r}")
        return {"angle": None if angle is None else float(angle),
                "p_up": None if p_up is None else tuple(float(p) for p in p_up), "turned": turned,
                "mirrored": mirrored}


def _number(value) -> bool:
    """A finite JSON number (a bool is not one; an int of 400 digits is, without overflowing a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


# -- where sessions live ------------------------------------------------------------------------
def _writable(folder: Path) -> bool:
    # a real probe: os.access is wrong on network shares and Windows ACLs
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def sessions_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chromodesk" / "sessions"


def default_session_path(image_path: str | Path) -> Path:
    """``<image>.chromodesk.json`` beside the image, else a per-user file keyed by the image's path.

    An existing session wins over the writability test, so work saved while a folder
    was read-only is still found once it becomes writable (and the reverse).
    """
    image_path = Path(image_path).absolute()
    beside = image_path.with_name(image_path.name + SESSION_SUFFIX)
    key = hashlib.sha256(str(image_path).encode("utf-8", "surrogatepass")).hexdigest()
    fallback = sessions_dir() / f"{key}.json"
    if beside.is_file():
        return beside
    if fallback.is_file():
        return fallback
    return beside if _writable(image_path.parent) else fallback


__all__ = ["SCHEMA_VERSION", "default_session_path", "load_session", "save_session", "session_to_dict", "sessions_dir"]
