"""Outline edits of the open cell: knife split, join, brush stroke and polygon redraw.

``Workspace`` owns one ``OutlineEdits`` and delegates to it. Each edit is one undo step
pushed through the workspace (so a read-only or signed-off cell refuses it there); a
refusal's reason goes to the status bar. Masks by threshold come from the whole image as
the classifier's crops see it, enhanced once per cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from chromodesk.core.document import Box

from . import commands

if TYPE_CHECKING:  # workspace imports this module
    from .workspace import Cell, Workspace


class OutlineEdits:
    def __init__(self, workspace: Workspace):
        self.ws = workspace

    # -- knife split and join -----------------------------------------------------------------------------
    def _enhanced(self, cell: Cell) -> np.ndarray:
        """The whole image as the classifier's crops see it (for masks by threshold): the one the
        classification made in the worker, or, before any (or for another model), made here once."""
        from chromodesk.core.preprocess import enhance_image

        cfg = self.ws.preprocess
        cached = cell.enhanced_for
        if cached is None or cached[0] != cfg:
            cell.enhanced_for = cached = (cfg, enhance_image(cell.gray, cfg))
        return cached[1]

    def mask_of(self, cell: Cell, record_id: str):
        from chromodesk.core.edit_masks import record_mask

        r = cell.doc.get(record_id)
        return record_mask(self._enhanced(cell), r.box, r.outline, self.ws.preprocess)

    def split_with_line(self, p0, p1) -> list[str] | None:
        """Cut the chromosome the line p0-p1 (image coordinates) crosses in two (one undo step): the
        selected one when the line crosses its box, else the first one it cuts into two pieces of
        at least 10%. The new ids, or None (refused: the status bar says why)."""
        from chromodesk.core.edit_masks import EditRefused, line_crosses_box, split_pieces

        ws = self.ws
        cell = ws.cell
        if cell is None:
            return None
        p0, p1 = (float(p0[0]), float(p0[1])), (float(p1[0]), float(p1[1]))
        crossed = [r for r in cell.doc if line_crosses_box(p0, p1, r.box)]
        if not crossed:
            ws.message.emit("Split: the knife line crosses no box; draw it across the chromosome to cut")
            return None
        # the selected one alone when the line crosses it (the one the technician is at), else the
        # one whose box the line runs through most, then the next (boxes overlap)
        crossed = [r for r in crossed if r.id == cell.selected] or sorted(
            crossed, key=lambda r: -_inside_length(p0, p1, r.box))
        refusal = None
        for r in crossed:
            mask, region = self.mask_of(cell, r.id)
            try:
                pieces = split_pieces(mask, region, p0, p1)
            except EditRefused as exc:
                refusal = refusal or f"Split refused for {r.id}: {exc}"
                continue
            command = commands.ReplaceRecords(cell.doc, [r.id], pieces, f"split {r.id}")
            if not ws._push(command):
                return None
            cell.select(command.new_ids[0])
            ws.message.emit(f"{r.id} split into {' and '.join(command.new_ids)} (Undo takes it back)")
            return command.new_ids
        ws.message.emit(refusal)
        return None

    def join_selected(self) -> str | None:
        """The selected chromosome and the one Ctrl+clicked besides it become one (one undo step):
        its box spans both, its outline both outlines. The new id, or None."""
        from chromodesk.core.edit_masks import join_outline, union_box

        ws = self.ws
        cell = ws.cell
        if cell is None or cell.selected is None or cell.partner is None:
            ws.message.emit("Join: select a chromosome, then Ctrl+click the other piece, then Join (J)")
            return None
        ids = [cell.selected, cell.partner]
        records = [cell.doc.get(rid) for rid in ids]
        box = union_box([r.box for r in records])
        outline = None
        if any(r.outline for r in records):  # where one has none, its threshold mask stands in
            masks = [self.mask_of(cell, rid) for rid in ids]
            # over the masks' regions too: an outline may reach a pixel or two past its box
            outline = join_outline(masks, union_box([box] + [region for _, region in masks]))
        command = commands.ReplaceRecords(cell.doc, ids, [(box, outline)], f"join {ids[0]} and {ids[1]}")
        if not ws._push(command):
            return None
        new_id = command.new_ids[0]
        cell.select(new_id)
        ws.message.emit(f"{ids[0]} and {ids[1]} joined into {new_id} (Undo takes it back)")
        return new_id

    # -- brush and polygon: the selected chromosome's outline redrawn -----------------------------------------
    def paint_selected(self, stroke, radius: float, erase: bool = False) -> bool:
        """One brush stroke (pixel coordinates, ``core.redraw``) over the selected chromosome's mask:
        painted on, or erased; one undo step. Refused (False) with the reason in the status bar."""
        from chromodesk.core.edit_masks import EditRefused
        from chromodesk.core.redraw import paint_mask

        what = "Erase" if erase else "Brush"
        cell = self._outline_target(what)
        if cell is None:
            return False
        rid, doc = cell.selected, cell.doc
        mask, region = self.mask_of(cell, rid)
        try:
            box, outline = paint_mask(mask, region, stroke, radius, image_size=(doc.width, doc.height), erase=erase)
        except EditRefused as exc:
            self.ws.message.emit(f"{what} refused for {rid}: {exc}")
            return False
        return self._redraw(cell, rid, box, outline, "erased from" if erase else "painted")

    def redraw_outline(self, points) -> bool:
        """The polygon the technician clicked (pixel coordinates) becomes the selected chromosome's
        outline, its box going round it; one undo step. Refused (False) with the reason."""
        from chromodesk.core.edit_masks import EditRefused
        from chromodesk.core.redraw import polygon_mask

        cell = self._outline_target("Redraw outline")
        if cell is None:
            return False
        rid = cell.selected
        try:
            box, outline = polygon_mask(points, (cell.doc.width, cell.doc.height))
        except EditRefused as exc:
            self.ws.message.emit(f"Redraw outline refused for {rid}: {exc}")
            return False
        return self._redraw(cell, rid, box, outline, "redrawn")

    def _outline_target(self, what: str) -> Cell | None:
        cell = self.ws.cell
        if cell is None:
            return None
        if cell.selected is None:
            self.ws.message.emit(f"{what}: select a chromosome first (its row in the table or its karyogram picture)")
            return None
        return cell

    def _redraw(self, cell: Cell, record_id: str, box: Box, outline, done: str) -> bool:
        text = f"{record_id}: outline {done}"
        if not self.ws._push(commands.RedrawOutline(cell.doc, record_id, box, outline, text)):
            return False
        self.ws.message.emit(f"{text}; it is classified again with it (Undo takes it back)")
        return True


def _inside_length(p0, p1, box: Box) -> float:
    """How much of the segment p0-p1 lies inside the box (sampled; enough to rank boxes)."""
    n = 64
    t = np.linspace(0.0, 1.0, n)
    xs, ys = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
    inside = (xs >= box.xmin) & (xs < box.xmax) & (ys >= box.ymin) & (ys < box.ymax)
    return float(inside.mean()) * float(np.hypot(p1[0] - p0[0], p1[1] - p0[1]))
