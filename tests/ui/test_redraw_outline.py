"""Cell ▸ Brush the outline (Shift+B), Redraw outline (P) and Mirror (M): each one undo step that
gives back the chromosome exactly (outline and box); the result is classified, saved and exported."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtWidgets import QApplication

from chromodesk.core.outline import outline_box, outline_mask

from .conftest import mouse_click, open_and_classify, send_mouse
from .test_split_join import knife_across, long_one

LEFT, RIGHT = Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton


def at(view, x: float, y: float) -> QPointF:
    """The viewport pixel nearest to image pixel (x, y) (pixel-centre coordinates, as outlines):
    mouse events land on whole viewport pixels."""
    want = view.map_image_to_widget(x + 0.5, y + 0.5)

    def error(point):
        got = view.viewbox.mapSceneToView(view.graphics.mapToScene(point))
        return abs(got.x() - x - 0.5) + abs(got.y() - y - 0.5)

    candidates = [QPoint(int(np.floor(want.x())) + dx, int(np.floor(want.y())) + dy) for dx in (0, 1) for dy in (0, 1)]
    return QPointF(min(candidates, key=error))


def drag(qtbot, view, points, button=LEFT, modifiers=Qt.KeyboardModifier.NoModifier, steps: int = 6) -> None:
    """Press at the first pixel, move through the others in steps, release at the last."""
    widget = view.graphics.viewport()

    def send(kind, pos, b, bs):
        QApplication.sendEvent(widget, QMouseEvent(kind, pos, QPointF(widget.mapToGlobal(pos.toPoint())), b, bs,
                                                   modifiers))

    send(QEvent.Type.MouseButtonPress, at(view, *points[0]), button, button)
    for a, b in zip(points, points[1:]):
        for i in range(1, steps + 1):
            qtbot.wait(25)  # pyqtgraph rate-limits moves
            t = i / steps
            send(QEvent.Type.MouseMove, at(view, a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])),
                 Qt.MouseButton.NoButton, button)
    qtbot.wait(25)
    send(QEvent.Type.MouseButtonRelease, at(view, *points[-1]), button, Qt.MouseButton.NoButton)


def long_axis(mask, region):
    """The mask's centre, unit long axis and the tip it points to (image pixels)."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs + region.xmin, ys + region.ymin], axis=1).astype(float)
    centre = pts.mean(axis=0)
    along = np.linalg.eigh(np.cov((pts - centre).T))[1][:, 1]
    return centre, along, centre + along * ((pts - centre) @ along).max()


def tip_outwards(mask, region, reach: float = 14.0):
    """From just inside one end of the mask along its long axis to ``reach`` px past that end."""
    _, along, tip = long_axis(mask, region)
    return tuple(tip - 2 * along), tuple(tip + reach * along)


def inside(outline, box, x: float, y: float) -> bool:
    x, y = int(round(x)), int(round(y))
    if not (box.xmin <= x < box.xmax and box.ymin <= y < box.ymax):
        return False
    return bool(outline_mask(outline, box)[y - box.ymin, x - box.xmin])


def prepared(qtbot, window, cell_files):
    """The cell open and classified, its longest chromosome confirmed and selected, nothing to undo."""
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    record = long_one(ws.cell.doc)
    ws.set_label(record.id, record.label)
    ws.cell.select(record.id)
    ws.cell.undo.clear()
    view = window.image_view
    b = record.box  # zoomed in: a pixel of the viewport is a small part of an image pixel
    view.viewbox.setRange(QRectF(b.xmin - 25, b.ymin - 25, b.width + 50, b.height + 50), padding=0)
    qtbot.wait(20)
    return ws, view, record


def test_brush_paints_past_the_box_then_undo_redo_and_save(qtbot, window, cell_files):
    from chromodesk.core.session import load_session

    ws, view, record = prepared(qtbot, window, cell_files)
    doc = ws.cell.doc
    before = asdict(record)
    n = len(doc)
    assert before["outline"] is None and before["confirmed_by"] == "tester"

    ws.cell.select(None)
    window.brush_action.trigger()  # nothing selected: refused, with a hint
    assert not view.viewbox.brush_mode and not window.brush_action.isChecked()
    assert "select a chromosome first" in window.statusBar().currentMessage()
    ws.cell.select(record.id)
    window.brush_action.trigger()
    assert view.viewbox.brush_mode and window.brush_action.isChecked()
    assert window.brush_action.shortcut().toString() == "Shift+B"
    assert window.statusBar().currentMessage().startswith(f"Brush: 6 px on {record.id}: drag to paint")
    assert not any(h.isVisible() for h in view.rois[record.id].getHandles())
    # the brush's reach is a circle round the mouse; ] and [ size it
    qtbot.wait(30)
    x, y = (record.box.xmin + record.box.xmax) // 2, (record.box.ymin + record.box.ymax) // 2
    send_mouse(view.graphics.viewport(), QEvent.Type.MouseMove, at(view, x, y), Qt.MouseButton.NoButton,
               Qt.MouseButton.NoButton)
    cursor = view.tools.cursor
    centre = cursor.rect().center()
    assert cursor.isVisible() and cursor.rect().width() == 12
    assert abs(centre.x() - (x + 0.5)) < 0.3 and abs(centre.y() - (y + 0.5)) < 0.3
    window.brush_larger_action.trigger()
    assert view.tools.radius == 7 and cursor.rect().width() == 14
    assert "Brush: 7 px" in window.statusBar().currentMessage()
    for _ in range(4):
        window.brush_smaller_action.trigger()
    assert view.tools.radius == 3

    mask, region = ws._mask_of(ws.cell, record.id)
    start, end = tip_outwards(mask, region)
    old = record.box
    assert not (old.xmin <= end[0] < old.xmax and old.ymin <= end[1] < old.ymax)  # the stroke leaves the box
    with qtbot.waitSignal(ws.classified, timeout=30000):
        drag(qtbot, view, [start, end])
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert ws.cell.undo.count() == 1 and record.id in doc.records and len(doc) == n
    after = doc.get(record.id)
    assert after.outline_by_hand and after.outline and outline_box(after.outline) == after.box
    assert inside(after.outline, after.box, *end) and after.box != old  # painted where the stroke went
    assert after.probabilities is not None and after.confirmed and after.final == before["final"]
    assert view.rois[record.id].box() == after.box and view.rois[record.id].outline.path().elementCount() >= 3
    assert view.viewbox.brush_mode  # the brush stays until Esc
    painted = (after.box, after.outline)

    ws.flush()
    saved = json.loads(ws.cell.session_path.read_text("utf-8"))
    (entry,) = [r for r in saved["records"] if r["id"] == record.id]
    assert entry["outline"] == [list(p) for p in after.outline] and entry["outline_by_hand"] is True
    assert entry["box"] == after.box.as_list()
    assert load_session(ws.cell.session_path).get(record.id).outline == after.outline

    window.undo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert asdict(doc.get(record.id)) == before  # outline and box as they were, confirmation too
    assert view.rois[record.id].box() == old
    ws.flush()
    assert load_session(ws.cell.session_path).get(record.id).outline is None

    window.redo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert (doc.get(record.id).box, doc.get(record.id).outline) == painted

    qtbot.keyClick(view.graphics.viewport(), Qt.Key.Key_Escape)
    assert not view.viewbox.brush_mode and not window.brush_action.isChecked() and not cursor.isVisible()
    assert not window.statusBar().currentMessage().startswith("Brush:")


def test_right_drag_or_shift_drag_erases_and_a_cut_keeps_the_larger_piece(qtbot, window, cell_files):
    ws, view, record = prepared(qtbot, window, cell_files)
    doc = ws.cell.doc
    old = record.box
    mask, region = ws._mask_of(ws.cell, record.id)
    # across the long axis, off centre: the two pieces differ in size
    centre, along, tip = long_axis(mask, region)
    shift = 0.3 * float(np.dot(tip - centre, along)) * along
    p0, p1 = (tuple(np.add(p, shift)) for p in knife_across(mask, region))
    window.brush_action.trigger()
    view.tools.set_radius(2)
    with qtbot.waitSignal(ws.classified, timeout=30000):
        drag(qtbot, view, [p0, p1], button=RIGHT)
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    cut = replace(doc.get(record.id))  # a copy: the next edit changes the record itself
    kept = outline_mask(cut.outline, cut.box)
    assert cut.outline_by_hand and cut.box.area < 0.85 * old.area
    assert 0.5 * mask.sum() < kept.sum() < 0.9 * mask.sum()  # the larger piece
    assert ws.cell.undo.count() == 1

    # Shift+drag in from past one end takes that end off, as one more undo step
    _, along, tip = long_axis(kept, cut.box)
    with qtbot.waitSignal(ws.classified, timeout=30000):
        drag(qtbot, view, [tuple(tip + 5 * along), tuple(tip - 2 * along)], modifiers=Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert ws.cell.undo.count() == 2
    shorter = doc.get(record.id)
    assert not inside(shorter.outline, shorter.box, *(tip - along)) and inside(cut.outline, cut.box, *(tip - along))
    window.undo_action.trigger()
    window.undo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert doc.get(record.id).box == old and doc.get(record.id).outline is None

    # a stroke that misses the chromosome is refused, with the reason, and is no undo step
    assert not ws.paint_selected([(2.0, 2.0)], 2, erase=True)
    assert "does not change" in window.statusBar().currentMessage() and ws.cell.undo.index() == 0


def test_polygon_redraws_the_outline_exactly_enter_or_double_click_closes_esc_cancels(qtbot, window, cell_files):
    ws, view, record = prepared(qtbot, window, cell_files)
    doc = ws.cell.doc
    before = asdict(record)
    b = record.box
    viewport = view.graphics.viewport()
    points = [(b.xmin + 2, b.ymin + 1), (b.xmax - 3, b.ymin + 2), (b.xmax - 2, b.ymax - 2), (b.xmin + 1, b.ymax - 3)]

    window.polygon_action.trigger()
    assert view.viewbox.polygon_mode and window.polygon_action.isChecked()
    assert window.polygon_action.shortcut().toString() == "P"
    assert window.statusBar().currentMessage().startswith(f"Redraw outline: {record.id}: click round")
    for p in points:  # clicks on the chromosome's box place points; they do not select anything
        mouse_click(qtbot, viewport, at(view, *p))
    assert view.tools.polygon_points == 4 and ws.cell.selected == record.id
    qtbot.keyClick(viewport, Qt.Key.Key_Backspace)  # the last point taken back, the rest kept ...
    assert view.tools.polygon_points == 3 and view.viewbox.polygon_mode
    qtbot.wait(QApplication.doubleClickInterval() + 50)  # (not a double click on the last one)
    mouse_click(qtbot, viewport, at(view, *points[-1]))  # ... and placed again
    assert view.tools.polygon_points == 4
    with qtbot.waitSignal(ws.classified, timeout=30000):
        qtbot.keyClick(viewport, Qt.Key.Key_Return)
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    redrawn = doc.get(record.id)
    assert redrawn.outline == tuple(points) and redrawn.outline_by_hand
    assert redrawn.box == outline_box(points) and ws.cell.undo.count() == 1
    assert not view.viewbox.polygon_mode and not window.polygon_action.isChecked()  # one outline per P
    assert redrawn.confirmed and redrawn.probabilities is not None

    window.undo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert asdict(doc.get(record.id)) == before
    window.redo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert doc.get(record.id).outline == tuple(points) and doc.get(record.id).box == outline_box(points)

    # a triangle closed with a double-click on its last point (which the double-click does not add twice)
    triangle = points[:3]
    window.polygon_action.trigger()
    for p in triangle[:-1]:
        mouse_click(qtbot, viewport, at(view, *p))
    last = at(view, *triangle[-1])
    mouse_click(qtbot, viewport, last)
    with qtbot.waitSignal(ws.classified, timeout=30000):
        send_mouse(viewport, QEvent.Type.MouseButtonDblClick, last, LEFT, LEFT)
        send_mouse(viewport, QEvent.Type.MouseButtonRelease, last, LEFT, Qt.MouseButton.NoButton)
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert doc.get(record.id).outline == tuple(triangle) and ws.cell.undo.count() == 2

    # Esc drops the points and leaves; too few points are refused and may be clicked again
    window.polygon_action.trigger()
    mouse_click(qtbot, viewport, at(view, *points[0]))
    qtbot.keyClick(viewport, Qt.Key.Key_Escape)
    assert not view.viewbox.polygon_mode and view.tools.polygon_points == 0 and ws.cell.undo.count() == 2
    window.polygon_action.trigger()
    for p in points[:2]:
        mouse_click(qtbot, viewport, at(view, *p))
    qtbot.keyClick(viewport, Qt.Key.Key_Return)
    assert "at least 3" in window.statusBar().currentMessage()
    assert view.viewbox.polygon_mode and ws.cell.undo.count() == 2 and doc.get(record.id).outline == tuple(triangle)


def picture(view) -> np.ndarray:
    """The karyogram the view shows, as RGB pixels."""
    image = view._pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h, line = image.width(), image.height(), image.bytesPerLine()
    rows = np.frombuffer(image.constBits(), np.uint8, count=line * h).reshape(h, line)
    return rows[:, : 3 * w].reshape(h, w, 3).copy()


def test_mirror_flips_the_karyogram_picture_is_one_undo_step_saved_and_exported(qtbot, window, cell_files, tmp_path,
                                                                                 monkeypatch):
    from chromodesk.core.session import load_session

    open_and_classify(qtbot, window, cell_files[0])
    ws, view = window.workspace, window.karyogram
    doc = ws.cell.doc
    qtbot.waitUntil(lambda: view._pixmap is not None and len(view.placements) > 40, timeout=30000)
    shown = picture(view)

    def crop(image, rid):
        x0, y0, x1, y1 = view.placements[rid]
        return image[y0:y1, x0:x1]

    record = next(doc.get(rid) for rid in view.placements
                  if not np.array_equal(crop(shown, rid), crop(shown, rid)[:, ::-1]))
    where = view.to_widget(view.placements[record.id]).center().toPoint()
    offered = []
    monkeypatch.setattr(view, "popup", lambda menu, _: offered.extend(a.text() for a in menu.actions()) or next(
        a for a in menu.actions() if a.text().startswith("Mirror")).trigger())
    from PySide6.QtGui import QContextMenuEvent

    with qtbot.waitSignal(ws.karyogramReady, timeout=30000):
        QApplication.sendEvent(view, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, where, view.mapToGlobal(where)))
    assert record.mirrored and ws.cell.selected == record.id and ws.cell.undo.count() == 1
    assert [t.split("\t")[-1] for t in offered] == ["T", "M"]  # the menu teaches the keys
    assert record.label and record.turned is None  # a mirror changes no label and no turn
    mirrored = picture(view)
    assert not np.array_equal(mirrored, shown)
    assert np.array_equal(crop(mirrored, record.id), crop(shown, record.id)[:, ::-1])
    ws.flush()
    assert load_session(ws.cell.session_path).get(record.id).mirrored is True

    # the karyogram PNG export shows it mirrored too
    with qtbot.waitSignal(ws.exported, timeout=30000) as done:
        ws.export(tmp_path / "out", ("karyogram",))
    png = cv2.cvtColor(cv2.imread(str(done.args[0]["karyogram"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(png, mirrored)

    with qtbot.waitSignal(ws.karyogramReady, timeout=30000):
        window.undo_action.trigger()
    assert not record.mirrored and np.array_equal(picture(view), shown)
    window.redo_action.trigger()
    assert record.mirrored
    # Cell ▸ Mirror (M) on the selected one: back again, one more undo step
    assert window.mirror_action.shortcut().toString() == "M"
    window.mirror_action.trigger()
    assert not record.mirrored and ws.cell.undo.count() == 2
    ws.flush()
    assert load_session(ws.cell.session_path).get(record.id).mirrored is False
