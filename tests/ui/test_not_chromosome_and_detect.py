"""'Not a chromosome' by key and button, and Cell > Detect again: each one undo step."""

from __future__ import annotations

from PySide6.QtCore import Qt

from chromodesk.core.document import Box

from .conftest import open_and_classify


def test_n_marks_the_selected_box_not_a_chromosome_and_undo_brings_it_back(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    record = list(doc)[0]
    label = record.label
    before = dict(doc.counts())
    ws.cell.select(record.id)
    qtbot.keyClick(window.image_view.graphics.viewport(), Qt.Key.Key_N)
    assert record.rejected and record.label is None
    assert doc.counts()[label] == before[label] - 1
    qtbot.waitUntil(lambda: window.palette.reject_button.isChecked(), timeout=5000)  # redrawn on the next loop turn
    assert "not a chromosome" in window.palette.info.text()
    window.undo_action.trigger()
    record = doc.get(record.id)
    assert not record.rejected and record.label == label and doc.counts() == before
    # the palette button does the same, and a label given afterwards brings the box back
    window.palette.reject_button.click()
    assert doc.get(record.id).rejected
    ws.label_selected(label)
    assert not doc.get(record.id).rejected and doc.get(record.id).label == label


def test_accept_all_reviews_every_chromosome_and_the_counter_says_so(qtbot, window, cell_files):
    """A box marked "not a chromosome" is none to confirm: after Accept all the status bar reads
    n/n over the chromosomes, not n/(n + 1) over the boxes."""
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    ws.cell.select(next(iter(doc)).id)
    ws.toggle_not_chromosome()
    assert sum(r.rejected for r in doc) == 1
    ws.accept_all()
    qtbot.waitUntil(lambda: window.review_label.text() == f"Reviewed {len(doc) - 1}/{len(doc) - 1}", timeout=5000)


def test_detect_again_replaces_unconfirmed_boxes_in_one_undo_step(qtbot, window, cell_files, monkeypatch):
    import chromodesk.pipeline as pipeline

    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    doc = ws.cell.doc
    keep = list(doc)[0]
    ws.set_label(keep.id, keep.label)  # confirmed: detection must leave it alone
    old = {r.id: r.box for r in doc}
    new_boxes = [Box(10 + 60 * i, 10, 50 + 60 * i, 80) for i in range(5)] + [keep.box]
    found = [(b, 2.5 if i == 4 else 0.0) for i, b in enumerate(new_boxes)]  # the detector doubted one
    monkeypatch.setattr(pipeline, "find_boxes", lambda gray, *a, **k: (found, "6 boxes found by a test double"))
    with qtbot.waitSignal(ws.classified, timeout=30000):
        ws.detect_again()
    assert keep.id in doc.records and doc.get(keep.id).confirmed
    assert len(doc) == 6  # the confirmed one and five new ones; the copy of the confirmed box is dropped
    assert sorted(r.box.as_list() for r in doc if r.id != keep.id) == sorted(b.as_list() for b in new_boxes[:5])
    assert {r.origin for r in doc if r.id != keep.id} == {"detected"} and doc.get(keep.id).origin == "annotations"
    qtbot.waitUntil(lambda: all(r.probabilities is not None for r in doc), timeout=30000)
    doubted = next(r for r in doc if r.box == new_boxes[4])
    # a cell of six has no empty slot to speak of: the doubted box stays out, one key brings it back
    assert doubted.doubt == 2.5 and doubted.rejected and doubted.label is None
    assert all(not r.rejected for r in doc if r.id != doubted.id)
    from chromodesk.ui.style import status_text

    assert "detector was unsure" in status_text(doubted)  # a purple box says why it is purple
    from PySide6.QtCore import Qt

    qtbot.waitUntil(lambda: window.image_view.rois[doubted.id].doubtful, timeout=5000)
    assert window.image_view.rois[doubted.id].pen.style() == Qt.PenStyle.DotLine  # drawn dotted, not solid
    assert all(window.image_view.rois[r.id].pen.style() == Qt.PenStyle.SolidLine for r in doc if r.id != doubted.id)
    window.undo_action.trigger()
    assert {r.id: r.box for r in doc} == old
    window.redo_action.trigger()
    assert len(doc) == 6 and doc.get(doubted.id).doubt == 2.5 and doc.get(doubted.id).rejected


def test_draw_mode_ends_after_one_box_and_esc_leaves_it(qtbot, window, cell_files):
    from .conftest import mouse_drag

    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    view = window.image_view
    viewport = view.graphics.viewport()
    window.draw_action.trigger()
    assert view.viewbox.draw_mode and window.draw_action.isChecked()
    with qtbot.waitSignal(ws.classified, timeout=30000):
        mouse_drag(qtbot, viewport, view.map_image_to_widget(900, 600), view.map_image_to_widget(960, 700))
    assert not view.viewbox.draw_mode and not window.draw_action.isChecked()  # a later drag pans again
    n = len(ws.cell.doc)
    mouse_drag(qtbot, viewport, view.map_image_to_widget(100, 600), view.map_image_to_widget(160, 700))
    assert len(ws.cell.doc) == n
    window.draw_action.trigger()
    qtbot.keyClick(viewport, Qt.Key.Key_Escape)
    assert not view.viewbox.draw_mode and not window.draw_action.isChecked()


def test_typed_digits_do_not_carry_over_to_another_chromosome(qtbot, window, cell_files):
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    first, second = list(ws.cell.doc)[:2]
    viewport = window.image_view.graphics.viewport()
    ws.cell.select(first.id)
    qtbot.keyClick(viewport, Qt.Key.Key_1)  # no Enter
    ws.cell.select(second.id)
    qtbot.keyClick(viewport, Qt.Key.Key_2)
    qtbot.keyClick(viewport, Qt.Key.Key_Return)
    assert ws.cell.doc.get(second.id).final == "2"


def test_before_any_label_the_karyotype_line_says_classifying_not_a_wall_of_flags(qtbot, cell_files):
    from chromodesk.core.document import Karyotype
    from chromodesk.ui.karyogram import CountsPanel
    from chromodesk.ui.workspace import Cell

    import numpy as np

    doc = Karyotype(str(cell_files[0]), "", 1134, 759)
    for i in range(46):
        doc.add(Box(10 + 20 * i, 10, 25 + 20 * i, 60))
    panel = CountsPanel()
    qtbot.addWidget(panel)
    panel.set_cell(Cell(doc, np.zeros((759, 1134), np.uint8), "detected", None))
    assert panel.iscn.text() == "classifying…" and panel.flags.text() == "" and panel.iscn_text == ""
    assert panel.summary.text().startswith("46 chromosomes")


def test_missing_x11_libraries_are_named_with_their_packages(monkeypatch):
    from chromodesk.ui.app import missing_display_libraries

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    found = {"xcb-icccm", "xcb-keysyms", "xcb-image", "xcb-render-util", "xcb-xkb", "xkbcommon-x11", "xcb-shape",
             "xcb-randr", "EGL", "fontconfig"}
    missing = missing_display_libraries(find=lambda lib: "/usr/lib/x" if lib in found else None)
    assert missing == ["libxcb-cursor0"]
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert missing_display_libraries(find=lambda lib: None) == []


def test_an_empty_window_shows_how_to_open_and_the_recent_files(qtbot, make_window, fake, prefs, cell_files):
    prefs.add_recent(cell_files[0])
    window = make_window(fake)
    assert window.central.currentWidget() is window.start_panel
    assert window.start_panel.recent.count() == 1
    item = window.start_panel.recent.item(0)
    with qtbot.waitSignal(window.workspace.classified, timeout=30000):
        window.start_panel.recent.itemActivated.emit(item)
    assert window.central.currentWidget() is window.image_view


def test_the_window_comes_back_with_the_docks_it_was_closed_with(qtbot, make_window, fake, prefs):
    # (the offscreen platform's screen is 800x600, so only the dock layout can be checked here;
    # the geometry goes through the same saveGeometry/restoreGeometry pair)
    from chromodesk.ui.main_window import MainWindow

    first = make_window(fake)
    first.case_dock.show()
    first.table_dock.hide()
    first.close()
    assert prefs.qsettings.value("window/geometry") is not None
    second = MainWindow(prefs, classifier_factory=lambda: fake, load_model=False)
    qtbot.addWidget(second)
    assert second.restore_layout()
    second.show()
    assert second.table_dock.isHidden() and not second.case_dock.isHidden()
    second.close()


def test_the_window_fits_a_1024_by_768_screen(make_window, fake):
    window = make_window(fake)
    hint = window.minimumSizeHint()
    assert hint.width() <= 1000 and hint.height() <= 700, hint
