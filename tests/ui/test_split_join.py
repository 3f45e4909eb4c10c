"""Cell ▸ Split with a knife line (K) and Cell ▸ Join into one chromosome (Ctrl+click, J): one
undo step each that gives back the originals exactly; the new chromosomes are classified and saved."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from PySide6.QtCore import QPointF, Qt

from chromodesk.core.outline import mask_outline

from .conftest import mouse_click, mouse_drag, open_and_classify, send_mouse


def knife_across(mask: np.ndarray, region) -> tuple[tuple[float, float], tuple[float, float]]:
    """A line across the middle of the mask, at right angles to its long axis, well past both edges."""
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() + region.xmin, ys.mean() + region.ymin
    cov = np.cov(np.stack([xs, ys]).astype(float))
    values, vectors = np.linalg.eigh(cov)
    across = vectors[:, 0]  # the short axis
    reach = max(mask.shape)
    return (cx - across[0] * reach, cy - across[1] * reach), (cx + across[0] * reach, cy + across[1] * reach)


def long_one(doc):
    return max((r for r in doc if not r.rejected), key=lambda r: max(r.box.width, r.box.height))


def test_knife_split_then_undo_redo_and_save(qtbot, window, cell_files):
    from chromodesk.core.session import load_session

    open_and_classify(qtbot, window, cell_files[0])
    ws, view = window.workspace, window.image_view
    doc = ws.cell.doc
    record = long_one(doc)
    # an outline (as the mask network would draw) and a confirmation: undo must give them back too
    mask, region = ws._mask_of(ws.cell, record.id)
    doc.set_prediction(record.id, record.probabilities, record.model_id, outline=mask_outline(mask, region))
    ws.set_label(record.id, record.label)
    ws.cell.undo.clear()
    before = asdict(doc.get(record.id))
    assert before["outline"] and before["confirmed_by"] == "tester"
    n = len(doc)
    order, at = list(doc.records), list(doc.records).index(record.id)

    window.knife_action.trigger()
    assert view.viewbox.knife_mode and window.knife_action.isChecked()
    p0, p1 = knife_across(mask, region)
    with qtbot.waitSignal(ws.classified, timeout=30000):
        mouse_drag(qtbot, view.graphics.viewport(), view.map_image_to_widget(*p0), view.map_image_to_widget(*p1))
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert record.id not in doc.records and len(doc) == n + 1
    assert ws.cell.undo.count() == 1
    new = [r for r in doc if r.id not in before["id"] and r.origin == "drawn"]
    assert len(new) == 2
    # the pieces stand where the chromosome stood, in the document and in the table
    assert sorted(list(doc.records).index(r.id) for r in new) == [at, at + 1]
    assert window.table.model_._ids == list(doc.records)
    for r in new:  # each piece lies inside the old box, is smaller, unconfirmed, and is classified
        b = r.box
        assert (b.xmin >= record.box.xmin - 2 and b.xmax <= record.box.xmax + 2
                and b.ymin >= record.box.ymin - 2 and b.ymax <= record.box.ymax + 2)
        assert b.area < 0.8 * record.box.area
        assert not r.confirmed and r.probabilities is not None
        assert r.id in view.rois
        # its outline is the cut piece's, and classification kept it (the fake has no mask network)
        assert r.outline and r.outline_by_hand and view.rois[r.id].outline.path().elementCount() >= 3
    assert view.viewbox.knife_mode  # the knife stays until Esc
    handles = view.rois[ws.cell.selected].getHandles()
    assert ws.cell.selected in {r.id for r in new} and handles and not any(h.isVisible() for h in handles)
    ws.flush()
    saved = load_session(ws.cell.session_path)
    assert record.id not in saved.records and {r.id for r in new} <= set(saved.records)
    assert all(saved.get(r.id).box == r.box and saved.get(r.id).outline == r.outline for r in new)

    window.undo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert len(doc) == n and asdict(doc.get(record.id)) == before
    assert all(r.id not in doc.records for r in new) and record.id in view.rois
    assert list(doc.records) == order and window.table.model_._ids == order  # back in its place
    assert ws.cell.selected == record.id  # and selected, not an empty selection
    ws.flush()
    assert asdict(load_session(ws.cell.session_path).get(record.id))["outline"] == before["outline"]

    window.redo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert record.id not in doc.records and all(r.id in doc.records for r in new)
    assert all(doc.get(r.id).box == r.box for r in new)
    assert ws.cell.selected in {r.id for r in new}

    # Esc leaves the knife
    qtbot.keyClick(view.graphics.viewport(), Qt.Key.Key_Escape)
    assert not view.viewbox.knife_mode and not window.knife_action.isChecked()
    ws.cell.select(new[0].id)
    handles = view.rois[new[0].id].getHandles()
    assert handles and all(h.isVisible() for h in handles)  # resizable again


def test_knife_that_nicks_or_misses_is_refused_with_a_message(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    record = long_one(doc)
    n = len(doc)
    b = record.box
    # along the outside of the image corner: crosses no box
    assert ws.split_with_line((1.0, 1.0), (3.0, 1.0)) is None
    assert "crosses no box" in window.statusBar().currentMessage()
    # across one corner of the box: nothing or a sliver of the chromosome
    refused = ws.split_with_line((b.xmin - 3.0, b.ymin + 6.0), (b.xmin + 6.0, b.ymin - 3.0))
    assert refused is None and len(doc) == n and record.id in doc.records
    assert "Split refused" in window.statusBar().currentMessage()
    # across the chromosome, 3 px from its tip: a nick
    mask, region = ws._mask_of(ws.cell, record.id)
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs + region.xmin, ys + region.ymin], axis=1).astype(float)
    centre = pts.mean(axis=0)
    along = np.linalg.eigh(np.cov((pts - centre).T))[1][:, 1]  # the long axis
    across = np.array([-along[1], along[0]])
    tip = centre + along * ((pts - centre) @ along).max()
    at = tip - 3 * along
    ws.cell.select(record.id)
    assert ws.split_with_line(tuple(at - 20 * across), tuple(at + 20 * across)) is None
    assert "nicks" in window.statusBar().currentMessage() and len(doc) == n
    assert ws.cell.undo.count() == 0


def test_join_two_with_ctrl_click_then_undo_redo_and_save(qtbot, window, cell_files):
    from chromodesk.core.session import load_session

    open_and_classify(qtbot, window, cell_files[0])
    ws, view = window.workspace, window.image_view
    doc = ws.cell.doc
    viewport = view.graphics.viewport()
    # two neighbours: the closest pair of box centres
    rs = [r for r in doc if not r.rejected]
    centre = {r.id: ((r.box.xmin + r.box.xmax) / 2, (r.box.ymin + r.box.ymax) / 2) for r in rs}
    a, b = min(((p, q) for p in rs for q in rs if p.id < q.id),
               key=lambda pq: np.hypot(*np.subtract(centre[pq[0].id], centre[pq[1].id])))
    ws.set_label(a.id, a.label)  # confirmed: undo must give the confirmation back
    mask, region = ws._mask_of(ws.cell, b.id)
    doc.set_prediction(b.id, b.probabilities, b.model_id, outline=mask_outline(mask, region))
    ws.cell.undo.clear()
    before = {r.id: asdict(r) for r in (a, b)}
    n = len(doc)

    def click(record, modifier=Qt.KeyboardModifier.NoModifier):
        """A click on a point of the box that no other box covers."""
        box = record.box
        others = [r.box for r in doc if r.id != record.id]
        for y in np.linspace(box.ymin + 1, box.ymax - 2, 9):
            for x in np.linspace(box.xmin + 1, box.xmax - 2, 9):
                if not any(o.xmin - 1 <= x < o.xmax + 1 and o.ymin - 1 <= y < o.ymax + 1 for o in others):
                    pos = view.map_image_to_widget(x, y)
                    from PySide6.QtCore import QEvent

                    left = Qt.MouseButton.LeftButton
                    for kind, buttons in ((QEvent.Type.MouseButtonPress, left),
                                          (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
                        from PySide6.QtGui import QMouseEvent
                        from PySide6.QtWidgets import QApplication

                        QApplication.sendEvent(viewport, QMouseEvent(kind, QPointF(pos), QPointF(viewport.mapToGlobal(
                            pos.toPoint())), left, buttons, modifier))
                    qtbot.wait(10)
                    return
        raise AssertionError(f"no free point in {record.id}")

    window.join_action.trigger()  # nothing picked: refused, with a hint
    assert len(doc) == n and "Ctrl+click" in window.statusBar().currentMessage()
    click(a)
    assert ws.cell.selected == a.id and ws.cell.partner is None
    click(b, Qt.KeyboardModifier.ControlModifier)
    assert ws.cell.selected == a.id and ws.cell.partner == b.id
    assert view.rois[b.id].partner and view.rois[a.id].selected
    with qtbot.waitSignal(ws.classified, timeout=30000):
        window.join_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert len(doc) == n - 1 and a.id not in doc.records and b.id not in doc.records
    joined = doc.get(ws.cell.selected)
    assert joined.origin == "drawn" and not joined.confirmed and joined.probabilities is not None
    assert joined.box.xmin == min(a.box.xmin, b.box.xmin) and joined.box.ymax == max(a.box.ymax, b.box.ymax)
    assert joined.box.xmax == max(a.box.xmax, b.box.xmax) and joined.box.ymin == min(a.box.ymin, b.box.ymin)
    assert ws.cell.undo.count() == 1 and ws.cell.partner is None
    ws.flush()
    saved = load_session(ws.cell.session_path)
    assert saved.get(joined.id).box == joined.box and a.id not in saved.records

    window.undo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert len(doc) == n and joined.id not in doc.records
    assert {rid: asdict(doc.get(rid)) for rid in before} == before
    ws.flush()
    saved = load_session(ws.cell.session_path)
    assert saved.get(a.id).confirmed_by == "tester" and saved.get(b.id).outline == before[b.id]["outline"]

    window.redo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert len(doc) == n - 1 and doc.get(joined.id).box == joined.box


def test_join_makes_one_outline_over_both_outlines(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    a, b = sorted((r for r in doc if not r.rejected), key=lambda r: r.box.xmin)[:2]
    for r in (a, b):
        mask, region = ws._mask_of(ws.cell, r.id)
        doc.set_prediction(r.id, r.probabilities, r.model_id, outline=mask_outline(mask, region))
    ws.cell.select(a.id)
    ws.cell.select_also(b.id)
    new_id = ws.join_selected()
    joined = doc.get(new_id)
    assert joined.outline is not None and joined.outline_by_hand
    xs = [p[0] for p in joined.outline]
    ys = [p[1] for p in joined.outline]
    # the one outline reaches into both chromosomes' outlines
    for r in (a, b):
        assert min(xs) <= min(p[0] for p in r.outline) and max(xs) >= max(p[0] for p in r.outline)
        assert min(ys) <= min(p[1] for p in r.outline) and max(ys) >= max(p[1] for p in r.outline)
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert doc.get(new_id).probabilities is not None and doc.get(new_id).outline == joined.outline


def test_the_first_knife_uses_the_image_the_worker_enhanced(qtbot, window, cell_files, monkeypatch):
    """The knife, join and brush need the cell's enhanced image; the classification made it in the
    worker, so the first cut does not compute it again on the GUI thread."""
    import chromodesk.core.preprocess as preprocess

    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    cfg, enhanced = ws.cell.enhanced_for
    assert cfg == ws.preprocess
    np.testing.assert_array_equal(enhanced, preprocess.enhance_image(ws.cell.gray, cfg))

    def not_on_the_gui_thread(*_):
        raise AssertionError("enhanced again on the GUI thread")

    monkeypatch.setattr(preprocess, "enhance_image", not_on_the_gui_thread)
    mask, region = ws._mask_of(ws.cell, long_one(ws.cell.doc).id)
    assert mask.any()
