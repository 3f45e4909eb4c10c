"""The case panel: every cell classified in the background, the case karyotype, cells chosen for
the report, and sign-off that locks the case until a recorded reopening."""

from __future__ import annotations

import shutil

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from chromodesk.core.case import case_state
from chromodesk.core.session import default_session_path, load_session


def _open_case(qtbot, window, cell_files, n=3):
    image, xml = cell_files
    for k in range(1, n):
        shutil.copy(image, image.with_name(f"103082{chr(97 + k)}.jpg"))
        shutil.copy(xml, xml.with_name(f"103082{chr(97 + k)}.xml"))
    ws = window.workspace
    with qtbot.waitSignal(ws.classified, timeout=30000):
        ws.open_folder(image.parents[1])
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    return ws, image.parents[1]


def test_classify_all_cells_then_the_case_karyotype(qtbot, window, cell_files):
    ws, folder = _open_case(qtbot, window, cell_files)
    panel = window.case_panel
    with qtbot.waitSignal(ws.caseStateChanged, timeout=60000):
        ws.classify_case()
    for image in ws.case:
        assert default_session_path(image).is_file()
    qtbot.waitUntil(lambda: "46,XX" in panel.header.text() and "3 counted" in panel.header.text(), timeout=10000)
    assert "46, 46,XX" in panel.list.item(1).text()
    # tick a cell for the report: stored in its session
    item = panel.list.item(2)
    item.setCheckState(Qt.CheckState.Checked)
    assert load_session(default_session_path(ws.case[2])).in_report


def test_sign_off_locks_the_case_until_a_recorded_reopening(qtbot, window, cell_files, monkeypatch):
    ws, folder = _open_case(qtbot, window, cell_files, n=2)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    window.case_panel.sign_button.click()
    assert case_state(folder)["signed_off"]["by"] == "tester"
    qtbot.waitUntil(lambda: "Signed off by tester" in window.case_panel.header.text(), timeout=5000)
    rid = next(iter(ws.cell.doc.records))
    before = ws.cell.doc.get(rid).final
    ws.set_label(rid, "7")
    assert ws.cell.doc.get(rid).final == before  # refused
    assert "signed off" in window.statusBar().currentMessage()
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("cell 2 relabelled after review", True))
    window.case_panel.sign_button.click()  # now reads "Reopen…"
    state = case_state(folder)
    assert state["signed_off"] is None and state["history"][-1]["action"] == "reopen"
    assert state["history"][-1]["reason"] == "cell 2 relabelled after review"
    ws.set_label(rid, "7")
    assert ws.cell.doc.get(rid).final == "7"


def test_a_cell_the_case_karyotype_hangs_on_is_marked(qtbot, tmp_path):
    """Three saved cells that lost a 14; one reads a 13 as a 14 at 55%. The panel's header warns
    that the case would read 45,XX,-14 were that cell read as the others, and its line says
    ⚠ with the other reading in its tooltip; the sure cells are not marked."""
    import cv2
    import numpy as np

    from chromodesk.core.document import Box, Karyotype
    from chromodesk.core.imaging import load_gray
    from chromodesk.core.karyotype import assign
    from chromodesk.core.session import save_session
    from chromodesk.ui.case import TICK_TIP, CasePanel
    from tests.core.test_case import _acrocentric_cell

    images = []
    for name, p13 in (("a", 0.999), ("b", 0.999), ("c", 0.45)):
        path = tmp_path / f"{name}.png"
        picture = np.full((200, 300), 230, np.uint8)
        cv2.ellipse(picture, (150, 100), (8, 30), 20, 0, 360, 60, -1)
        cv2.imwrite(str(path), picture)
        probs, _, _ = _acrocentric_cell(p13)
        doc = Karyotype(str(path), load_gray(path).sha256, 300, 200)
        ids = [doc.add(Box(2 * i, 10, 2 * i + 5, 40)).id for i in range(len(probs))]
        for rid, row in zip(ids, probs):
            doc.set_prediction(rid, row, "test-model")
        doc.set_assignments(dict(zip(ids, assign(probs)[0])))
        save_session(doc, default_session_path(path))
        images.append(path)
    panel = CasePanel()
    qtbot.addWidget(panel)
    panel.set_case(images)
    header = panel.header.text()
    assert "46,XX" in header and "c.png reads 45,XX,-13, or 45,XX,-14 as another cell does" in header
    marked = [panel.list.item(i) for i in range(3)]
    assert [item.text().startswith("⚠") for item in marked] == [False, False, True]
    assert "the case would read 45,XX,-14" in marked[2].toolTip() and marked[0].toolTip() == TICK_TIP
