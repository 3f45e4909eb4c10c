"""The document: boxes, per-chromosome records and the cell they belong to.

This is the only mutable state of an analysis. Views (GUI, CLI) observe it through
``Karyotype.subscribe``; they never keep their own copies of labels or boxes.
Coordinates are image pixels, 0-based, with ``xmax``/``ymax`` exclusive (numpy
slicing); ``core.voc`` is the one place that converts from VOC's 1-based boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Iterator

from .labels import CLASS_INDEX, CLASSES


@dataclass(frozen=True)
class Box:
    xmin: int
    ymin: int
    xmax: int
    ymax: int

    @property
    def width(self) -> int:
        return self.xmax - self.xmin

    @property
    def height(self) -> int:
        return self.ymax - self.ymin

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def clipped(self, width: int, height: int) -> "Box":
        return Box(
            min(max(self.xmin, 0), width),
            min(max(self.ymin, 0), height),
            min(max(self.xmax, 0), width),
            min(max(self.ymax, 0), height),
        )

    def iou(self, other: "Box") -> float:
        ix = max(0, min(self.xmax, other.xmax) - max(self.xmin, other.xmin))
        iy = max(0, min(self.ymax, other.ymax) - max(self.ymin, other.ymin))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_list(self) -> list[int]:
        return [self.xmin, self.ymin, self.xmax, self.ymax]


@dataclass
class ChromosomeRecord:
    id: str
    box: Box
    file_label: str | None = None  # label read from the annotation file (normalised)
    file_name: str | None = None  # the raw <name> text, kept even when unknown
    predicted: str | None = None  # independent top-1 of the classifier
    probabilities: tuple[float, ...] | None = None  # over CLASSES, in CLASSES order
    assigned: str | None = None  # label after cell-level joint assignment
    final: str | None = None  # label the technician accepted or set
    confirmed_by: str | None = None
    confirmed_at: str | None = None  # ISO 8601, UTC
    model_id: str | None = None
    box_revision: int = 0  # bumped on every box change; stale results are dropped
    # "not a chromosome" (background, debris, a nucleus, a fragment, a merged cluster): the
    # classifier's reject probability and decision, and the technician's word, which wins
    reject_probability: float | None = None
    auto_rejected: bool = False
    excluded: bool | None = None  # True: technician says not a chromosome; False: says it is one
    origin: str | None = None  # where the box came from: annotations | detected | drawn
    # nats by which the detector's score fell short of its threshold (0: at or above it, or not
    # detected): such a box stays out of the cell unless the cell's assignment needs it more
    doubt: float = 0.0
    # which end is up in the karyogram: the angle its classifier crop was turned upright by, and
    # P(p-arm up) of that crop as each of the 24 classes (None without an orientation network)
    angle: float | None = None
    p_up: tuple[float, ...] | None = None
    turned: bool | None = None  # technician: True = turned 180 degrees from that crop, False = as it is
    # technician: shown flipped left-right in the karyogram (the mirror image of the upright picture)
    mirrored: bool = False
    # the chromosome's outer contour in image pixels, as the mask network drew it (None: threshold
    # + largest component inside the box, as before); its classifier crop and karyogram use it
    outline: tuple[tuple[int, int], ...] | None = None
    # the outline came from the technician's edit (knife split, join): classification keeps it and
    # cuts the crop by it instead of drawing its own; a box change drops it with the outline
    outline_by_hand: bool = False  # also the brush and the polygon (Redraw outline)

    @property
    def shown_turned(self) -> bool:
        """Whether the karyogram turns it 180 degrees from its upright crop: the technician's word,
        else the network's for the label shown (the p-arm goes up), else not."""
        if self.turned is not None:
            return self.turned
        if self.p_up is None or self.label not in CLASS_INDEX:
            return False
        return self.p_up[CLASS_INDEX[self.label]] < 0.5

    @property
    def rejected(self) -> bool:
        """Out of the counts, the karyogram, the assignment and the ISCN string."""
        return self.excluded if self.excluded is not None else self.auto_rejected

    @property
    def unknown_name(self) -> bool:
        """The file named this object with something that is not one of the 24 classes."""
        return self.file_name is not None and self.file_label is None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_by is not None and self.final is not None

    @property
    def confidence(self) -> float | None:
        if self.probabilities is None:
            return None
        label = self.suggested
        return self.probabilities[CLASSES.index(label)] if label in CLASSES else max(self.probabilities)

    @property
    def suggested(self) -> str | None:
        """What the software proposes: the cell-level assignment, else the independent guess."""
        return self.assigned or self.predicted

    @property
    def label(self) -> str | None:
        """The label to show and export: confirmed > suggested > as read from file; None when
        the box holds no chromosome."""
        if self.rejected:
            return None
        return self.final or self.suggested or self.file_label

    def top_k(self, k: int = 3) -> list[tuple[str, float]]:
        if self.probabilities is None:
            return []
        order = sorted(range(len(CLASSES)), key=lambda i: -self.probabilities[i])
        return [(CLASSES[i], float(self.probabilities[i])) for i in order[:k]]


@dataclass(frozen=True)
class Event:
    """What changed: ``kind`` is one of added, removed, box (also an outline redrawn), prediction,
    label, turn (also a mirror), cell, reset."""

    kind: str
    record_id: str | None = None


Listener = Callable[[Event], None]


@dataclass
class Karyotype:
    image_path: str
    image_sha256: str
    width: int
    height: int
    records: dict[str, ChromosomeRecord] = field(default_factory=dict)
    annotation_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    revision: int = 0
    not_analysable: bool = False  # the technician's mark: this spread cannot be karyotyped
    comment: str = ""  # the technician's note on the cell
    in_report: bool = False  # its karyogram goes into the case report
    _listeners: list[Listener] = field(default_factory=list, repr=False, compare=False)
    # the next number new_id tries; never goes back, and is saved, so that an id once given
    # (and perhaps named in an export or a report) never names another chromosome later
    next_id: int = field(default=1, compare=False)

    # -- observation -------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, kind: str, record_id: str | None = None) -> None:
        self.revision += 1
        for listener in list(self._listeners):
            listener(Event(kind, record_id))

    # -- queries -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ChromosomeRecord]:
        return iter(self.records.values())

    def get(self, record_id: str) -> ChromosomeRecord:
        return self.records[record_id]

    def new_id(self) -> str:
        while True:
            candidate = f"c{self.next_id:02d}"
            self.next_id += 1
            if candidate not in self.records:
                return candidate

    def _note_id(self, rid: str) -> None:
        if len(rid) > 1 and rid[0] == "c" and rid[1:].isdigit():
            self.next_id = max(self.next_id, int(rid[1:]) + 1)

    # -- edits (each emits one event) --------------------------------------------
    def add(self, box: Box, *, record_id: str | None = None, at: int | None = None, **fields) -> ChromosomeRecord:
        """A new chromosome, last in the cell's order or at position ``at`` (a split's pieces
        stand where the chromosome they came from stood)."""
        rid = record_id or self.new_id()
        if rid in self.records:
            raise ValueError(f"duplicate chromosome id {rid}")
        self._note_id(rid)
        record = ChromosomeRecord(id=rid, box=box.clipped(self.width, self.height), **fields)
        self._insert(record, at)
        self._emit("added", rid)
        return record

    def _insert(self, record: ChromosomeRecord, at: int | None) -> None:
        if at is None or at >= len(self.records):
            self.records[record.id] = record
            return
        items = list(self.records.items())
        items.insert(max(0, at), (record.id, record))
        self.records.clear()  # in place: views hold this dict
        self.records.update(items)

    def position(self, record_id: str) -> int:
        return list(self.records).index(record_id)

    def remove(self, record_id: str) -> ChromosomeRecord:
        record = self.records.pop(record_id)
        self._emit("removed", record_id)
        return record

    def set_box(self, record_id: str, box: Box) -> None:
        self._new_picture(record_id, box)
        self._emit("box", record_id)

    def set_outline(self, record_id: str, box: Box, outline) -> None:
        """The technician's own outline (brush, polygon) and the box that goes round it: like a box
        change the chromosome is classified again (confirmation kept), and the outline stays."""
        record = self._new_picture(record_id, box)
        record.outline = tuple((int(x), int(y)) for x, y in outline)
        record.outline_by_hand = True
        self._emit("box", record_id)

    def _new_picture(self, record_id: str, box: Box) -> ChromosomeRecord:
        record = self.records[record_id]
        record.box = box.clipped(self.width, self.height)
        record.box_revision += 1
        # a moved box is a different picture: its old prediction (and which end is up) no longer
        # applies. ``mirrored`` stays: it flips whatever picture stands upright.
        record.predicted = record.probabilities = record.assigned = record.reject_probability = None
        record.angle = record.p_up = record.turned = record.outline = None
        record.auto_rejected = record.outline_by_hand = False
        record.doubt = 0.0  # the detector doubted the box it drew, not the one the technician made
        return record

    def set_prediction(
        self, record_id: str, probabilities, model_id: str | None, *, box_revision: int | None = None,
        reject_probability: float | None = None, rejected: bool = False,
        angle: float | None = None, p_up=None, outline=None,
    ) -> bool:
        """Store classifier output (with the crop's angle and P(p-arm up) per class, when an
        orientation network ran); ignored (returns False) if the box changed since the job began."""
        record = self.records.get(record_id)
        if record is None or (box_revision is not None and box_revision != record.box_revision):
            return False
        probs = tuple(float(p) for p in probabilities)
        record.probabilities = probs
        record.predicted = CLASSES[max(range(len(probs)), key=probs.__getitem__)]
        record.model_id = model_id
        record.reject_probability = None if reject_probability is None else float(reject_probability)
        record.auto_rejected = bool(rejected)
        record.angle = None if angle is None else float(angle)
        record.p_up = None if p_up is None else tuple(float(p) for p in p_up)
        if not record.outline_by_hand:  # the technician's outline stays
            record.outline = None if outline is None else tuple((int(x), int(y)) for x, y in outline)
        self._emit("prediction", record_id)
        return True

    def set_assignments(self, assigned: dict[str, str | None]) -> None:
        for rid, label in assigned.items():
            if rid in self.records:
                self.records[rid].assigned = label
        self._emit("prediction")

    def set_final(self, record_id: str, label: str | None, reviewer: str | None, when: str | None = None) -> None:
        """Confirm ``label`` (or clear the confirmation with ``label=None``)."""
        if label is not None and label not in CLASSES:
            raise ValueError(f"unknown label {label!r}")
        record = self.records[record_id]
        record.final = label
        record.confirmed_by = reviewer if label is not None else None
        record.confirmed_at = (when or now_iso()) if label is not None else None
        if label is not None and record.rejected:
            record.excluded = False  # naming its chromosome says the box holds one
        self._emit("label", record_id)

    def set_excluded(self, record_id: str, excluded: bool | None) -> None:
        """The technician's word on "not a chromosome" (None: back to the classifier's)."""
        record = self.records[record_id]
        record.excluded = excluded
        if excluded:
            record.final = record.confirmed_by = record.confirmed_at = None
        self._emit("label", record_id)

    def set_turned(self, record_id: str, turned: bool | None) -> None:
        """The technician's word on which end is up in the karyogram (None: back to the network's)."""
        self.records[record_id].turned = turned
        self._emit("turn", record_id)

    def set_mirrored(self, record_id: str, mirrored: bool) -> None:
        """The technician's left-right flip of a chromosome in the karyogram."""
        self.records[record_id].mirrored = bool(mirrored)
        self._emit("turn", record_id)

    _PREDICTION_FIELDS = ("probabilities", "predicted", "assigned", "model_id", "reject_probability", "auto_rejected",
                          "angle", "p_up", "outline")

    def snapshot_predictions(self) -> dict[str, tuple]:
        """Every record's classifier output and assignment, to put back on undo: with a cell-context
        stage, one box added or moved changes what the classifier says about all the others."""
        return {rid: (r.box_revision,) + tuple(getattr(r, f) for f in self._PREDICTION_FIELDS)
                for rid, r in self.records.items()}

    def restore_predictions(self, snapshot: dict[str, tuple]) -> None:
        """Put back a snapshot's outputs on the records whose box is still the one it was taken for."""
        for rid, values in snapshot.items():
            record = self.records.get(rid)
            if record is None or record.box_revision != values[0]:
                continue
            for name, value in zip(self._PREDICTION_FIELDS, values[1:]):
                setattr(record, name, value)
        self._emit("prediction")

    def set_cell_note(self, not_analysable: bool, comment: str, in_report: bool | None = None) -> None:
        self.not_analysable, self.comment = bool(not_analysable), str(comment)
        if in_report is not None:
            self.in_report = bool(in_report)
        self._emit("cell")

    def restore(self, record: ChromosomeRecord, at: int | None = None) -> None:
        """Put back a record exactly as it was (used by undo), at its old position ``at`` when given."""
        if record.id in self.records:
            self.records[record.id] = replace(record)
        else:
            self._insert(replace(record), at)
        self._emit("added", record.id)

    # -- summaries ---------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in CLASSES}
        for r in self:
            if r.label in out:
                out[r.label] += 1
        return out

    def unreviewed(self) -> list[ChromosomeRecord]:
        return [r for r in self if not r.confirmed and not r.excluded]

    def chromosomes(self) -> list[ChromosomeRecord]:
        """The records that hold a chromosome (not rejected)."""
        return [r for r in self if not r.rejected]


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
