"""Boxes drawn, moved and deleted with the mouse; stale results; cancel; errors as dialogs."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QMessageBox

from chromodesk.core.document import Box

from .conftest import mouse_click, mouse_drag, open_and_classify, send_mouse
from .fakes import FakeClassifier, FakeOrienter


def test_draw_a_box_and_it_is_classified(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    view = window.image_view
    viewport = view.graphics.viewport()
    window.draw_action.trigger()
    assert view.viewbox.draw_mode
    start, end = view.map_image_to_widget(900, 600), view.map_image_to_widget(960, 700)
    with qtbot.waitSignal(ws.classified, timeout=30000):
        mouse_drag(qtbot, viewport, start, end)
    assert len(doc) == 47
    new = doc.get(ws.cell.selected)  # the new box is selected
    assert abs(new.box.xmin - 900) <= 3 and abs(new.box.ymax - 700) <= 3
    assert new.probabilities is not None and new.label is not None
    assert new.id in view.rois and window.table.model().rowCount() == 47
    # one undo step removes it again
    window.undo_action.trigger()
    assert len(doc) == 46 and new.id not in view.rois
    window.redo_action.trigger()
    assert new.id in doc.records and doc.get(new.id).probabilities is not None


def test_click_selects_and_drag_moves_the_selected_box(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    view = window.image_view
    viewport = view.graphics.viewport()
    record = max(doc, key=lambda r: r.box.area)  # a big box: easy to hit
    b = record.box
    centre = view.map_image_to_widget((b.xmin + b.xmax) / 2, (b.ymin + b.ymax) / 2)
    mouse_click(qtbot, viewport, centre)
    assert ws.cell.selected == record.id
    assert view.rois[record.id].selected and view.rois[record.id].translatable
    revision = record.box_revision
    offset = view.map_image_to_widget(b.xmin + 40, b.ymin + 25) - view.map_image_to_widget(b.xmin, b.ymin)
    with qtbot.waitSignal(ws.classified, timeout=30000):
        mouse_drag(qtbot, viewport, centre, centre + offset)
    moved = doc.get(record.id)
    assert ws.cell.undo.count() == 1  # the whole drag is one command
    assert moved.box_revision == revision + 1
    assert abs(moved.box.xmin - (b.xmin + 40)) <= 3 and abs(moved.box.ymin - (b.ymin + 25)) <= 3
    assert moved.box.width == b.width and moved.box.height == b.height
    qtbot.waitUntil(lambda: doc.get(record.id).probabilities is not None, timeout=30000)
    window.undo_action.trigger()
    assert doc.get(record.id).box == b
    assert view.rois[record.id].box() == b


def test_click_on_background_clears_selection_and_delete_key(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    rid = next(iter(ws.cell.doc.records))
    order = list(ws.cell.doc.records)
    ws.cell.select(rid)
    window.delete_action.trigger()
    assert rid not in ws.cell.doc.records and ws.cell.selected is None
    assert rid not in window.image_view.rois
    assert window.table.model().rowCount() == 45
    window.undo_action.trigger()
    assert rid in ws.cell.doc.records and rid in window.image_view.rois
    assert list(ws.cell.doc.records) == order and window.table.model_._ids == order  # first again, not last
    assert ws.cell.selected == rid  # the undo shows what it gave back
    ws.cell.select(rid)
    mouse_click(qtbot, window.image_view.graphics.viewport(), QPointF(3, 3))  # outside the image
    assert ws.cell.selected is None


def test_with_a_context_stage_a_new_box_updates_the_whole_cell(qtbot, make_window, cell_files):
    window = make_window(FakeClassifier.from_voc(cell_files[1], (1134, 759), has_context=True))
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    other = next(iter(doc.records))
    before = tuple(doc.get(other).probabilities)
    ws.add_box(Box(900, 600, 960, 700))
    with qtbot.waitSignal(ws.classified, timeout=30000) as done:
        pass
    assert done.args[0] == 47  # every chromosome's answer was refreshed, not only the new one
    assert tuple(doc.get(other).probabilities) != before
    qtbot.waitUntil(ws.is_settled, timeout=30000)


def test_results_apply_only_to_unchanged_boxes(qtbot, make_window, cell_files):
    slow = FakeClassifier.from_voc(cell_files[1], (1134, 759), delay=0.6)
    window = make_window(slow)
    ws = window.workspace
    ws.open_image(cell_files[0])
    qtbot.waitUntil(lambda: ws.cell is not None and ws.is_classifying(), timeout=20000)
    assert slow.started.wait(20)
    doc = ws.cell.doc
    rid = next(iter(doc.records))
    b = doc.get(rid).box
    ws.move_box(rid, Box(b.xmin + 5, b.ymin, b.xmax + 5, b.ymax))  # while the job runs
    with qtbot.waitSignal(ws.classified, timeout=30000) as first:
        pass
    assert first.args[0] == 45  # the moved box's stale result was dropped
    assert doc.get(rid).probabilities is None
    with qtbot.waitSignal(ws.classified, timeout=30000) as second:
        pass
    assert second.args[0] == 1 and doc.get(rid).probabilities is not None
    qtbot.waitUntil(ws.is_settled, timeout=30000)


def test_cancel_classification(qtbot, make_window, cell_files):
    slow = FakeClassifier.from_voc(cell_files[1], (1134, 759), delay=1.0)
    window = make_window(slow)
    ws = window.workspace
    ws.open_image(cell_files[0])
    qtbot.waitUntil(lambda: window.cancel_button.isVisible(), timeout=20000)
    applied = []
    ws.classified.connect(applied.append)
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert not window.progress.isVisible() and not ws.is_classifying()
    qtbot.waitUntil(lambda: ws.runner.active() == 0, timeout=30000)
    qtbot.wait(100)
    assert applied == []
    assert all(r.probabilities is None for r in ws.cell.doc)
    assert "cancelled" in window.statusBar().currentMessage().lower()


def test_worker_error_becomes_one_dialog(qtbot, make_window, cell_files, monkeypatch):
    shown = []

    def fake_exec(box):
        shown.append((box.text(), box.detailedText(), box.icon()))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    broken = FakeClassifier.from_voc(cell_files[1], (1134, 759), fail="GPU fell off the bus")
    window = make_window(broken)
    ws = window.workspace
    ws.open_image(cell_files[0])
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=30000)
    qtbot.waitUntil(lambda: ws.runner.active() == 0, timeout=30000)
    qtbot.waitUntil(lambda: not window.image_view.is_building(), timeout=20000)
    qtbot.wait(200)
    assert len(shown) == 1, shown  # one dialog, no retry storm
    text, details, icon = shown[0]
    assert "Classification failed: GPU fell off the bus" in text
    assert "Traceback" in details and "RuntimeError" in details
    assert icon == QMessageBox.Icon.Critical
    assert window.isVisible()  # no crash: the boxes are still there to work with
    assert len(window.image_view.rois) == 46


def test_open_error_becomes_a_dialog(qtbot, window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.text()) or 0)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    window.workspace.open_image(bad)
    qtbot.waitUntil(lambda: bool(shown), timeout=20000)
    assert "broken.jpg" in shown[0]
    assert window.workspace.cell is None
    assert str(bad.resolve()) not in window.prefs.recent  # File > Open recent offers no broken file


def test_image_without_annotations_gets_proposed_boxes(qtbot, window, cell_files, tmp_path):
    import shutil

    lonely = tmp_path / "lonely" / "cell.jpg"
    lonely.parent.mkdir()
    shutil.copy(cell_files[0], lonely)
    ws = window.workspace
    with qtbot.waitSignal(ws.classified, timeout=60000):
        ws.open_image(lonely)
    assert ws.cell.source == "detected" and len(ws.cell.doc) > 20
    assert all(r.probabilities is not None for r in ws.cell.doc)  # proposals are classified like any box
    message = window.statusBar().currentMessage()
    assert "detector" in message and "check the boxes" in message and message.count("boxes") == 2
    assert window.prefs.recent[0] == str(lonely.resolve())


def test_typed_label_can_be_corrected(qtbot, window, cell_files):
    from .conftest import open_and_classify

    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    rid = next(iter(ws.cell.doc.records))
    ws.cell.select(rid)
    for key in (Qt.Key.Key_2, Qt.Key.Key_3):  # 23 is no chromosome
        qtbot.keyClick(window.table, key)
    assert "23" in window.palette.typed.text() and "⏎" not in window.palette.typed.text()
    qtbot.keyClick(window.table, Qt.Key.Key_Backspace)
    qtbot.keyClick(window.table, Qt.Key.Key_Return)
    assert ws.cell.doc.get(rid).final == "2"
    qtbot.keyClick(window.table, Qt.Key.Key_Y)
    qtbot.keyClick(window.table, Qt.Key.Key_Escape)
    assert window.palette.typed.text() == ""
    qtbot.keyClick(window.table, Qt.Key.Key_Return)  # nothing typed: nothing happens
    assert ws.cell.doc.get(rid).final == "2"


def test_undo_of_a_new_box_gives_back_every_chromosome_as_it_was(qtbot, make_window, cell_files):
    """With a cell-context stage a new box changes everybody's probabilities: undo must restore them all."""
    window = make_window(FakeClassifier.from_voc(cell_files[1], (1134, 759), has_context=True))
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    seen = {r.id: (r.probabilities, r.label, r.confidence) for r in doc}
    with qtbot.waitSignal(ws.classified, timeout=30000):
        ws.add_box(Box(900, 600, 960, 700))
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert any(doc.get(rid).probabilities != p for rid, (p, _, _) in seen.items())  # the others did change
    window.undo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert {r.id: (r.probabilities, r.label, r.confidence) for r in doc} == seen
    window.redo_action.trigger()
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert len(doc) == 47 and all(r.probabilities is not None for r in doc)


def test_invert_and_gamma_change_only_what_the_eye_sees(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    view = window.image_view
    item = view.image_item
    before = item.getLevels()
    lut = lambda: view.histogram.gradient.colorMap().getLookupTable(nPts=5, alpha=False)[:, 0]  # noqa: E731
    assert lut()[0] < lut()[-1]
    view.set_display(invert=True)
    assert lut()[0] == 255 and lut()[-1] == 0
    view.set_display(invert=False, gamma=0.7)
    assert lut()[2] > 140  # midtones brighter
    assert list(item.getLevels()) == list(before)  # the levels (and the picture the classifier gets) are untouched


def test_turn_a_chromosome_in_the_karyogram_by_hand(qtbot, make_window, fake, cell_files, monkeypatch):
    """Classification stores P(p-arm up) for every class; a double-click on a karyogram chromosome
    turns it 180 degrees as one undo step, redrawn and saved; a relabel needs no network."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication

    from chromodesk.core.labels import CLASS_INDEX
    from chromodesk.core.session import load_session

    fake.orienter = FakeOrienter(fake.preprocess)
    window = make_window(fake)
    open_and_classify(qtbot, window, cell_files[0])
    ws, view = window.workspace, window.karyogram
    doc = ws.cell.doc
    assert fake.orienter.calls and all(r.p_up is not None and r.angle is not None for r in doc)
    record = next(r for r in doc if r.label == "2")
    assert not record.shown_turned  # the fake says p-arm up for 2 (0.8)
    qtbot.waitUntil(lambda: record.id in view.placements, timeout=30000)
    where = view.to_widget(view.placements[record.id]).center()
    left = Qt.MouseButton.LeftButton
    with qtbot.waitSignal(ws.karyogramReady, timeout=30000):
        send_mouse(view, QEvent.Type.MouseButtonDblClick, where, left, left)
    assert record.turned is True and record.shown_turned and ws.cell.undo.count() == 1
    assert record.label == "2" and record.confirmed_by is None  # the turn changes no label
    ws.flush()
    assert load_session(ws.cell.session_path).get(record.id).turned is True
    window.undo_action.trigger()
    assert record.turned is None and not record.shown_turned
    window.redo_action.trigger()
    assert record.turned is True
    window.undo_action.trigger()
    # the Cell menu's action (T) turns the selected one, and so does the chromosome's context menu
    ws.cell.select(record.id)
    window.turn_action.trigger()
    assert record.turned is True
    window.undo_action.trigger()
    ws.cell.select(None)
    monkeypatch.setattr(view, "popup", lambda menu, where: menu.actions()[0].trigger())
    at = where.toPoint()
    QApplication.sendEvent(view, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, at, view.mapToGlobal(at)))
    assert record.turned is True and ws.cell.selected == record.id and ws.cell.undo.count() == 1
    window.undo_action.trigger()
    # a relabel flips the automatic choice
    calls = len(fake.orienter.calls)
    ws.set_label(record.id, "1")  # P(p-arm up) of 1 is 0.2: drawn turned over, without the network
    assert record.shown_turned and len(fake.orienter.calls) == calls
    assert record.p_up[CLASS_INDEX["1"]] == 0.2

