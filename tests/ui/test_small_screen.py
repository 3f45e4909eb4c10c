"""At 1024x768 the status bar still shows a tool's whole hint (what the drag does, how to leave),
next to a real model's long id (elided there, whole in its tooltip)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction

from .conftest import IMAGE_SIZE, open_and_classify
from .fakes import FakeClassifier

LONG_ID = "resnet18-20261127-070200+ctx20261127-133820+rej20261130-110431"  # a shipped model's id


def message_room(window) -> int:
    """Pixels QStatusBar has for its message: from its left margin to the first permanent widget shown."""
    bar = window.statusBar()
    shown = [w for w in (window.progress, window.cancel_button, window.read_only_label, window.review_label,
                         window.model_label, window.device_label) if w.isVisible()]
    return min((w.x() for w in shown), default=bar.width()) - 2 - 6


def test_tool_hints_fit_the_status_bar_at_1024x768(qtbot, make_window, cell_files):
    window = make_window(FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE, model_id=LONG_ID))
    window.resize(1024, 768)
    open_and_classify(qtbot, window, cell_files[0])
    ws, bar = window.workspace, window.statusBar()
    assert LONG_ID in window.model_label.toolTip()
    ws.cell.select(next(iter(ws.cell.doc)).id)
    for action, hint in ((window.brush_action, "Esc leaves"), (window.polygon_action, "Esc cancels"),
                         (window.knife_action, "Esc leaves")):
        action.trigger()
        qtbot.wait(50)  # the status bar lays its widgets out
        text = bar.currentMessage()
        assert hint in text
        assert bar.fontMetrics().horizontalAdvance(text) <= message_room(window), text
        action.trigger()
        assert not bar.currentMessage()


def test_long_status_tips_and_messages_are_whole_at_1024x768(qtbot, make_window, cell_files):
    """A menu entry's status tip or a long message takes the whole status bar while it shows, and
    the review, model and device labels come back after."""
    window = make_window(FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE, model_id=LONG_ID))
    window.resize(1024, 768)
    open_and_classify(qtbot, window, cell_files[0])
    bar = window.statusBar()
    tips = [a.statusTip() for a in window.findChildren(QAction) if a.statusTip()]
    longest = max(tips, key=len)
    assert bar.fontMetrics().horizontalAdvance(longest) > 500  # a tip that did not fit beside the labels
    for text in tips + ["Restored your saved review (6/46 confirmed) from the autosave of 2026-11-30 22:58; "
                        "File ▸ Revert to saved goes back to the last save"]:
        bar.showMessage(text, 0)
        qtbot.wait(20)
        assert bar.fontMetrics().horizontalAdvance(text) <= message_room(window), text
    bar.clearMessage()
    qtbot.wait(20)
    assert window.model_label.isVisible() and window.device_label.isVisible()


def test_knife_hint_comes_back_when_a_message_times_out(qtbot, window, cell_files):
    """Like the brush's and the polygon's: the knife stays out after a cut, so does what to do with it."""
    open_and_classify(qtbot, window, cell_files[0])
    bar = window.statusBar()
    window.knife_action.trigger()
    assert bar.currentMessage().startswith("Knife:")
    bar.showMessage("c09 split into c47 and c48 (Undo takes it back)", 15000)
    bar.clearMessage()  # as when its 15 s are up
    assert bar.currentMessage().startswith("Knife:")
    window.knife_action.trigger()
    assert not bar.currentMessage()


def test_every_table_header_is_whole_at_1024x768(qtbot, make_window, cell_files):
    """The chromosome table's headers read in full ("Status", not "Sta") on a small screen."""
    window = make_window(FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE))
    window.resize(1024, 768)
    window.show()
    open_and_classify(qtbot, window, cell_files[0])
    qtbot.wait(50)
    table, header = window.table, window.table.horizontalHeader()
    metrics, room = header.fontMetrics(), header.viewport().width()
    assert not table.horizontalScrollBar().isVisible()
    for column in range(table.model().columnCount()):
        text = table.model().headerData(column, Qt.Orientation.Horizontal)
        right = header.sectionViewportPosition(column) + metrics.horizontalAdvance(text) + 8
        assert right <= room and header.sectionSize(column) >= metrics.horizontalAdvance(text) + 8, (text, right, room)


def test_the_karyotype_formula_reads_on_one_line_at_1024x768(qtbot, make_window, cell_files):
    """Beside the review summary the formula used to break after every comma ("45," / "XY," / "-8")."""
    window = make_window(FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE, model_id=LONG_ID))
    window.resize(1024, 768)
    open_and_classify(qtbot, window, cell_files[0])
    ws = window.workspace
    ws.cell.doc.set_excluded(next(iter(ws.cell.doc)).id, True)  # 45 chromosomes: a formula with a flag
    panel = window.counts
    qtbot.waitUntil(lambda: panel.iscn_text.startswith("45,"), timeout=5000)
    qtbot.wait(50)
    assert panel.iscn.fontMetrics().horizontalAdvance(panel.iscn_text) < panel.iscn.width()
    assert panel.iscn.height() < 2 * panel.iscn.fontMetrics().height()  # one line
    assert "45 chromosomes" in panel.summary.text() and "not a chromosome" in panel.summary.text()
