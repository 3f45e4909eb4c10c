"""Undoable edits. Commands hold the document, record ids and before/after values: never widgets.

Every redo/undo goes through a ``Karyotype`` method, so each emits the document event
that the views (and autosave, reassignment, reclassification) react to.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from PySide6.QtGui import QUndoCommand

from chromodesk.core.document import Box, ChromosomeRecord, Karyotype, now_iso


class SetCellNote(QUndoCommand):
    """The cell's "not analysable" mark and comment."""

    def __init__(self, doc: Karyotype, not_analysable: bool, comment: str, parent: QUndoCommand | None = None):
        super().__init__(parent)
        self.doc = doc
        self.before = (doc.not_analysable, doc.comment)
        self.after = (not_analysable, comment)
        self.setText("cell: not analysable" if not_analysable and not self.before[0] else "cell note")

    def redo(self) -> None:
        self.doc.set_cell_note(*self.after)

    def undo(self) -> None:
        self.doc.set_cell_note(*self.before)


class SetExcluded(QUndoCommand):
    """The technician's "not a chromosome" (``excluded=True``) or "it is one" (``False``)."""

    def __init__(self, doc: Karyotype, record_id: str, excluded: bool, parent: QUndoCommand | None = None):
        super().__init__(parent)
        self.doc, self.record_id, self.excluded = doc, record_id, excluded
        self.before = replace(doc.get(record_id))
        self.setText(f"{record_id}: {'not a chromosome' if excluded else 'a chromosome'}")

    def redo(self) -> None:
        self.doc.set_excluded(self.record_id, self.excluded)

    def undo(self) -> None:
        self.doc.restore(self.before)


class TurnChromosome(QUndoCommand):
    """Turn a chromosome 180 degrees in the karyogram: the technician's word on which end is up,
    which then holds whatever the orientation network or a later label says."""

    def __init__(self, doc: Karyotype, record_id: str, parent: QUndoCommand | None = None):
        super().__init__(parent)
        self.doc, self.record_id = doc, record_id
        record = doc.get(record_id)
        self.before, self.after = record.turned, not record.shown_turned
        self.setText(f"{record_id}: turn 180°")

    def redo(self) -> None:
        self.doc.set_turned(self.record_id, self.after)

    def undo(self) -> None:
        self.doc.set_turned(self.record_id, self.before)


class MirrorChromosome(QUndoCommand):
    """Flip a chromosome left-right in the karyogram (the technician's word; again: back)."""

    def __init__(self, doc: Karyotype, record_id: str, parent: QUndoCommand | None = None):
        super().__init__(parent)
        self.doc, self.record_id = doc, record_id
        self.before = doc.get(record_id).mirrored
        self.setText(f"{record_id}: mirror" if not self.before else f"{record_id}: mirror back")

    def redo(self) -> None:
        self.doc.set_mirrored(self.record_id, not self.before)

    def undo(self) -> None:
        self.doc.set_mirrored(self.record_id, self.before)


class _KeepsTheCell(QUndoCommand):
    """A box edit whose undo gives back what the user saw before it: with a cell-context stage the
    other chromosomes' probabilities and labels changed too. Redo gives back what was seen after."""

    def __init__(self, doc: Karyotype, parent: QUndoCommand | None = None):
        super().__init__(parent)
        self.doc = doc
        self._before = doc.snapshot_predictions()
        self._after: dict | None = None

    def undo(self) -> None:
        self._after = self.doc.snapshot_predictions()
        self.undo_boxes()
        self.doc.restore_predictions(self._before)

    def redo(self) -> None:
        self.redo_boxes()
        if self._after is not None:
            self.doc.restore_predictions(self._after)

    def undo_boxes(self) -> None:
        raise NotImplementedError

    def redo_boxes(self) -> None:
        raise NotImplementedError


class AddBox(_KeepsTheCell):
    def __init__(self, doc: Karyotype, box: Box, parent: QUndoCommand | None = None):
        super().__init__(doc, parent)
        self.box = box
        self.record_id = doc.new_id()
        self.setText(f"add box {self.record_id}")
        self._removed: ChromosomeRecord | None = None

    def redo_boxes(self) -> None:
        if self._removed is None:
            self.doc.add(self.box, record_id=self.record_id, origin="drawn")
        else:  # put back what undo took away, including a prediction that arrived meanwhile
            self.doc.restore(self._removed)

    def undo_boxes(self) -> None:
        self._removed = self.doc.remove(self.record_id)


class MoveBox(_KeepsTheCell):
    """Move or resize: one command per finished drag. Undo restores the record as it was."""

    def __init__(self, doc: Karyotype, record_id: str, after: Box, parent: QUndoCommand | None = None):
        super().__init__(doc, parent)
        self.record_id, self.after = record_id, after
        self.before = replace(doc.get(record_id))
        self._moved: ChromosomeRecord | None = None
        self.setText(f"move box {record_id}")

    def redo_boxes(self) -> None:
        if self._moved is None:
            self.doc.set_box(self.record_id, self.after)
        else:  # as it was after the move, with the prediction it got there
            self.doc.restore(self._moved)

    def undo_boxes(self) -> None:
        self._moved = replace(self.doc.get(self.record_id))
        self.doc.restore(self.before)


class DeleteBox(_KeepsTheCell):
    def __init__(self, doc: Karyotype, record_id: str, parent: QUndoCommand | None = None):
        super().__init__(doc, parent)
        self.record_id = record_id
        self.before = replace(doc.get(record_id))
        self.at = doc.position(record_id)
        self.focus_after_undo = record_id  # the workspace selects it again (see Workspace.after_undo)
        self.setText(f"delete box {record_id}")

    def redo_boxes(self) -> None:
        self.before = self.doc.remove(self.record_id)

    def undo_boxes(self) -> None:
        self.doc.restore(self.before, at=self.at)


class SetLabels(QUndoCommand):
    """Confirm labels, recording who and when (``label=None`` clears a confirmation).

    One command for one chromosome or many ("accept all" is one undo step). Holds, per
    record id, the (final, confirmed_by, confirmed_at) before and after.
    """

    def __init__(self, doc: Karyotype, changes: dict[str, str | None], reviewer: str | None,
                 when: str | None = None, parent: QUndoCommand | None = None):
        super().__init__(parent)
        self.doc = doc
        when = when or now_iso()
        self.before: dict[str, tuple] = {}
        self.after: dict[str, tuple] = {}
        for rid, label in changes.items():
            r = doc.get(rid)
            self.before[rid] = (r.final, r.confirmed_by, r.confirmed_at)
            self.after[rid] = (label, reviewer, when)
        if len(changes) == 1:
            rid, label = next(iter(changes.items()))
            self.setText(f"{rid} = {label}" if label else f"clear {rid}")
        else:
            self.setText(f"accept {len(changes)} labels")

    def redo(self) -> None:
        for rid, values in self.after.items():
            self.doc.set_final(rid, *values)

    def undo(self) -> None:
        for rid, values in reversed(list(self.before.items())):
            self.doc.set_final(rid, *values)


def set_label_command(doc: Karyotype, record_id: str, label: str | None, reviewer: str | None) -> SetLabels:
    return SetLabels(doc, {record_id: label}, reviewer)


def accept_command(doc: Karyotype, record_ids: Iterable[str], reviewer: str) -> QUndoCommand | None:
    """One undo step that confirms the shown label of every listed chromosome not yet confirmed."""
    changes = {}
    for rid in record_ids:
        r = doc.get(rid)
        if not r.confirmed and r.label is not None:
            changes[rid] = r.label
    return SetLabels(doc, changes, reviewer) if changes else None


class ReplaceBoxes(_KeepsTheCell):
    """Detect again: the boxes nobody confirmed give way to freshly detected ones (one undo step).

    Confirmed chromosomes stay, and a detected box that repeats one of them (IoU >= 0.5) is dropped.
    ``found``: (box, the detector's doubt about it) pairs, as ``pipeline.find_boxes`` gives them.
    """

    def __init__(self, doc: Karyotype, found: list[tuple[Box, float]], parent: QUndoCommand | None = None):
        super().__init__(doc, parent)
        kept = [r for r in doc if r.confirmed or r.excluded]
        self.removed = [replace(r) for r in doc if not (r.confirmed or r.excluded)]
        self.at = [doc.position(r.id) for r in self.removed]
        self.found = [(b, d) for b, d in found if all(b.iou(r.box) < 0.5 for r in kept)]
        self.added: list[str] = []
        self.setText(f"detect again: {len(self.removed)} boxes -> {len(self.found)}")

    def redo_boxes(self) -> None:
        for r in self.removed:
            self.doc.remove(r.id)
        if not self.added:
            self.added = [self.doc.add(b, origin="detected", doubt=d).id for b, d in self.found]
        else:
            for rid, (b, d) in zip(self.added, self.found):
                self.doc.add(b, record_id=rid, origin="detected", doubt=d)

    def undo_boxes(self) -> None:
        for rid in self.added:
            if rid in self.doc.records:
                self.doc.remove(rid)
        for at, r in zip(self.at, self.removed):  # ascending: each goes back where it stood
            self.doc.restore(r, at=at)


class ReplaceRecords(_KeepsTheCell):
    """Some chromosomes give way to new ones made from them (knife split: one -> two; join: two ->
    one), as one undo step. The new records are "drawn" and unconfirmed, with the given boxes and
    outlines, and get classified like any new box; undo puts the old ones back exactly."""

    def __init__(self, doc: Karyotype, old_ids: list[str], pieces: list[tuple[Box, tuple | None]], text: str,
                 parent: QUndoCommand | None = None):
        super().__init__(doc, parent)
        self.before = [replace(doc.get(rid)) for rid in old_ids]
        self.at = [doc.position(rid) for rid in old_ids]  # undo puts each back where it stood
        self.pieces = list(pieces)
        self.new_ids: list[str] = []
        for _ in pieces:  # ids not in use and not given twice
            rid = doc.new_id()
            while rid in self.new_ids:
                rid = doc.new_id()
            self.new_ids.append(rid)
        self._added: list[ChromosomeRecord] | None = None
        # what the workspace selects after an undo (the first original) or a redo (the first new one)
        self.focus_after_undo, self.focus_after_redo = old_ids[0], self.new_ids[0] if self.new_ids else None
        self.setText(text)

    def redo_boxes(self) -> None:
        for r in self.before:
            self.doc.remove(r.id)
        first = min(self.at)  # the new chromosomes stand where the first old one stood
        if self._added is None:
            for k, (rid, (box, outline)) in enumerate(zip(self.new_ids, self.pieces)):
                self.doc.add(box, record_id=rid, at=first + k, origin="drawn", outline=outline,
                             outline_by_hand=outline is not None)
        else:  # as they were before the undo, with the predictions they got meanwhile
            for k, r in enumerate(self._added):
                self.doc.restore(r, at=first + k)

    def undo_boxes(self) -> None:
        self._added = [self.doc.remove(rid) for rid in self.new_ids if rid in self.doc.records]
        for at, r in sorted(zip(self.at, self.before), key=lambda pair: pair[0]):
            self.doc.restore(r, at=at)


class RedrawOutline(_KeepsTheCell):
    """A chromosome's outline redrawn by hand (brush stroke, polygon), its box following it: one
    undo step. The record keeps its id and confirmation and is classified again; undo puts it
    back exactly, redo as it was after the edit (with the prediction it got there)."""

    def __init__(self, doc: Karyotype, record_id: str, box: Box, outline, text: str,
                 parent: QUndoCommand | None = None):
        super().__init__(doc, parent)
        self.record_id, self.box, self.outline = record_id, box, tuple(outline)
        self.before = replace(doc.get(record_id))
        self._edited: ChromosomeRecord | None = None
        self.setText(text)

    def redo_boxes(self) -> None:
        if self._edited is None:
            self.doc.set_outline(self.record_id, self.box, self.outline)
        else:
            self.doc.restore(self._edited)

    def undo_boxes(self) -> None:
        self._edited = replace(self.doc.get(self.record_id))
        self.doc.restore(self.before)
