"""The main window: menus, docks, status bar, and the wires between views and the workspace.

No state lives here: the document is in ``workspace.cell.doc``; the views draw it and
send requests to ``Workspace`` methods, which push undo commands.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from chromodesk.core.imaging import SUPPORTED_SUFFIXES

from .case import CasePanel
from .coalesce import NextTurn
from .dialogs import ExportDialog, PreferencesDialog
from .errors import log_dir, show_error
from .image_view import ImageView
from .karyogram import CountsPanel, KaryogramView
from .palette import LabelPalette, ReviewKeys
from .start_panel import StartPanel
from .settings import Preferences
from .table import ChromosomeTable
from .workspace import Workspace, device_name

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in SUPPORTED_SUFFIXES) + ");;All files (*)"


class MainWindow(QMainWindow):
    def __init__(self, prefs: Preferences | None = None, classifier_factory: Callable[[], object] | None = None,
                 load_model: bool = True, headless: bool = False, autosave: bool = True):
        super().__init__()
        self.setWindowTitle("ChromoDesk")
        self.setAcceptDrops(True)
        self.headless = headless  # errors are collected instead of shown (screenshot mode)
        self.errors: list[str] = []
        self._update_review_soon = NextTurn(self, self._update_review)
        self._refresh_case_soon = NextTurn(self, self._refresh_case)
        self.prefs = prefs or Preferences()
        self.workspace = ws = Workspace(self.prefs, classifier_factory, self)
        ws.autosave = autosave

        # -- views ------------------------------------------------------------------------------------------
        self.image_view = ImageView()
        self.start_panel = StartPanel()
        self.central = QStackedWidget()  # the start panel until an image is open, then the image
        self.central.addWidget(self.start_panel)
        self.central.addWidget(self.image_view)
        self.setCentralWidget(self.central)
        self.table = ChromosomeTable()
        self.case_panel = CasePanel()
        self.case_list = self.case_panel.list
        self.karyogram = KaryogramView()
        self.counts = CountsPanel()
        self.palette = LabelPalette()
        karyogram_box = QWidget()
        kl = QVBoxLayout(karyogram_box)
        kl.setContentsMargins(0, 0, 0, 0)
        kl.setSpacing(0)
        kl.addWidget(self.counts)
        kl.addWidget(self.karyogram, 1)
        self.table_dock = self._dock("Chromosomes", self.table, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.case_dock = self._dock("Case", self.case_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.karyogram_dock = self._dock("Karyogram", karyogram_box, Qt.DockWidgetArea.RightDockWidgetArea)
        self.palette_dock = self._dock("Label", self.palette, Qt.DockWidgetArea.RightDockWidgetArea)
        self.splitDockWidget(self.karyogram_dock, self.palette_dock, Qt.Orientation.Vertical)
        self.splitDockWidget(self.case_dock, self.table_dock, Qt.Orientation.Vertical)
        self.case_dock.hide()
        # usable minimum widths: the table keeps "ID | Label | Conf. | Status" readable beside its
        # scrollbar, the karyogram its pairs
        self.table.setMinimumWidth(228)
        karyogram_box.setMinimumWidth(260)
        self._docks_sized = False
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)

        # -- status bar ------------------------------------------------------------------------------------
        bar = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(lambda: ws.cancel_classification())
        self.review_label = QLabel("")
        self.read_only_label = QLabel("<b>Read-only</b>")  # the cell is edited in another window
        self.model_label = QLabel("Loading model…")
        self.device_label = QLabel("")
        for w in (self.progress, self.cancel_button, self.read_only_label, self.review_label, self.model_label,
                  self.device_label):
            bar.addPermanentWidget(w)
        self.progress.hide()
        self.cancel_button.hide()
        self.read_only_label.hide()

        self._make_actions()
        self.keys = ReviewKeys(self)
        QApplication.instance().installEventFilter(self.keys)

        # -- wiring ----------------------------------------------------------------------------------------
        ws.cellChanged.connect(self._cell_changed)
        ws.caseChanged.connect(self._case_changed)
        ws.modelChanged.connect(self._model_changed)
        ws.progress.connect(self._progress)
        ws.idle.connect(self._idle)
        ws.karyogramReady.connect(self.karyogram.set_result)
        ws.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        ws.error.connect(self.report_error)
        ws.exported.connect(self._exported)
        ws.saved.connect(self._saved)
        ws.readOnlyChanged.connect(lambda _: self._show_read_only())
        for view in (self.image_view, self.table, self.karyogram):
            view.selectRequested.connect(self._select)
        self.image_view.boxDrawn.connect(ws.add_box)
        self.image_view.boxEdited.connect(ws.move_box)
        self.karyogram.labelDropped.connect(ws.set_label)
        self.karyogram.turnRequested.connect(ws.turn)
        self.karyogram.mirrorRequested.connect(ws.mirror)
        self.palette.labelClicked.connect(ws.label_selected)
        self.palette.acceptClicked.connect(ws.accept_selected)
        self.palette.acceptAllClicked.connect(ws.accept_all)
        self.palette.nextClicked.connect(ws.select_next_least_confident)
        self.palette.rejectClicked.connect(ws.toggle_not_chromosome)
        self.keys.rejectPressed.connect(ws.toggle_not_chromosome)
        self.keys.labelEntered.connect(ws.label_selected)
        self.keys.acceptPressed.connect(ws.accept_selected)
        self.keys.nextPressed.connect(ws.select_next_least_confident)
        self.keys.typedChanged.connect(self.palette.show_typed)
        self.keys.escapePressed.connect(lambda: (self.image_view.set_draw_mode(False),
                                                 self.image_view.set_knife_mode(False),
                                                 self.image_view.set_brush_mode(False),
                                                 self.image_view.set_polygon_mode(False)))
        self.keys.enterPressed.connect(self.image_view.tools.close_polygon)
        self.keys.backspacePressed.connect(self.image_view.tools.drop_last_point)
        self.image_view.drawModeChanged.connect(self.draw_action.setChecked)
        self.image_view.knifeModeChanged.connect(self.knife_action.setChecked)
        self.image_view.knifeModeChanged.connect(self._knife_mode_changed)
        self.image_view.knifeDrawn.connect(ws.split_with_line)
        self.image_view.brushModeChanged.connect(self.brush_action.setChecked)
        self.image_view.polygonModeChanged.connect(self.polygon_action.setChecked)
        for signal in (self.image_view.brushModeChanged, self.image_view.polygonModeChanged,
                       self.image_view.tools.radiusChanged):
            signal.connect(self._show_tool_hint)
        self.image_view.brushPainted.connect(
            lambda stroke, erase: ws.paint_selected(stroke, self.image_view.tools.radius, erase))
        self.image_view.polygonDrawn.connect(self._polygon_drawn)
        # a result's message times out: what to do in the tool comes back
        self.statusBar().messageChanged.connect(lambda text: text or self._show_tool_hint())
        self.statusBar().messageChanged.connect(self._fit_message)
        self.image_view.partnerRequested.connect(self._select_also)
        self.case_list.openRequested.connect(ws.open_image)
        self.case_list.inReportChanged.connect(ws.set_in_report)
        self.case_panel.classifyAllClicked.connect(ws.classify_case)
        self.case_panel.signOffClicked.connect(self.sign_off_dialog)
        self.case_panel.reopenClicked.connect(self.reopen_dialog)
        ws.caseStateChanged.connect(self._refresh_case)
        self.start_panel.openImageClicked.connect(self.open_dialog)
        self.start_panel.openFolderClicked.connect(self.open_folder_dialog)
        self.start_panel.recentChosen.connect(ws.open_path)
        self._cell_changed(None)
        if load_model:
            ws.load_model_soon()  # after the window is up: start-up never waits for torch

    def sizeHint(self) -> QSize:
        return QSize(1600, 1000)

    def restore_layout(self) -> bool:
        """The window's last size, position and dock layout (not in headless mode)."""
        geometry = self.prefs.qsettings.value("window/geometry")
        state = self.prefs.qsettings.value("window/state")
        if self.headless or geometry is None:
            return False
        self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self._docks_sized = True  # the user's own dock sizes win over the defaults
        return True

    def save_layout(self) -> None:
        if not self.headless:
            self.prefs.qsettings.setValue("window/geometry", self.saveGeometry())
            self.prefs.qsettings.setValue("window/state", self.saveState())
            self.prefs.sync()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._docks_sized:  # once the window has its size: image in the middle gets the rest
            self._docks_sized = True
            self.resizeDocks([self.table_dock, self.karyogram_dock], [270, 620], Qt.Orientation.Horizontal)
            self.resizeDocks([self.karyogram_dock, self.palette_dock], [620, 260], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    # -- actions and menus -------------------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut=None, checkable: bool = False, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        ws = self.workspace
        m = self.menuBar()
        file = m.addMenu("&File")
        file.addAction(self._action("&Open image…", self.open_dialog, QKeySequence.StandardKey.Open))
        file.addAction(self._action("Open &folder as case…", self.open_folder_dialog, "Ctrl+Shift+O"))
        self.recent_menu = file.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file.addSeparator()
        self.export_action = self._action("&Export…", self.export_dialog, "Ctrl+E")
        file.addAction(self.export_action)
        file.addSeparator()
        file.addAction(self._action("&Quit", self.close, QKeySequence.StandardKey.Quit))

        edit = m.addMenu("&Edit")
        self.undo_action = ws.undo_group.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = ws.undo_group.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit.addAction(self.undo_action)
        edit.addAction(self.redo_action)
        # say what an undo or redo changed: the command just undone is the stack's next redo
        self.undo_action.triggered.connect(
            lambda: self.statusBar().showMessage(f"Undone: {ws.undo_group.redoText()}", 8000))
        self.redo_action.triggered.connect(
            lambda: self.statusBar().showMessage(f"Redone: {ws.undo_group.undoText()}", 8000))
        self.undo_action.triggered.connect(ws.after_undo)
        self.redo_action.triggered.connect(ws.after_redo)
        edit.addSeparator()
        self.draw_action = self._action("&Draw box", self.image_view.set_draw_mode, "B", checkable=True,
                                        tip="Drag on the image to add a chromosome box")
        edit.addAction(self.draw_action)
        self.delete_action = self._action("&Delete box", ws.delete_selected, QKeySequence.StandardKey.Delete)
        edit.addAction(self.delete_action)
        edit.addSeparator()
        edit.addAction(self._action("Accept selected label\tSpace", ws.accept_selected))
        edit.addAction(self._action("Clear the selected label's confirmation", ws.unconfirm_selected, "Ctrl+Backspace"))
        edit.addAction(self._action("Accept &all labels", ws.accept_all, "Ctrl+Shift+A"))
        edit.addAction(self._action("Next least confident\tTab", ws.select_next_least_confident))

        view = m.addMenu("&View")
        view.addAction(self._action("&Fit image", self.image_view.fit, "F"))
        view.addAction(self._action("&Invert grey levels", lambda on: self.image_view.set_display(invert=on), "I",
                                    checkable=True))
        view.addAction(self._action("Brighter midtones (gamma 0.7)", lambda: self.image_view.set_display(gamma=0.7)))
        view.addAction(self._action("Darker midtones (gamma 1.4)", lambda: self.image_view.set_display(gamma=1.4)))
        view.addAction(self._action("Normal midtones", lambda: self.image_view.set_display(gamma=1.0)))
        view.addSeparator()
        for dock in (self.table_dock, self.case_dock, self.karyogram_dock, self.palette_dock):
            view.addAction(dock.toggleViewAction())

        cell = m.addMenu("&Cell")
        cell.addAction(self._action("&Classify again", lambda: ws.classify(force=True), "Ctrl+R"))
        cell.addAction(self._action("Cancel classification", lambda: ws.cancel_classification()))
        cell.addAction(self._action("&Detect again", ws.detect_again, "Ctrl+D",
                                    tip="Find the chromosomes again with the detector; unconfirmed boxes are replaced (undoable)"))
        cell.addAction(self._action("&Not a chromosome\tN", ws.toggle_not_chromosome))
        self.turn_action = self._action("&Turn 180° in the karyogram", ws.turn_selected, "T",
                                        tip="Stand the selected chromosome the other end up (p-arm up); undoable")
        cell.addAction(self.turn_action)
        self.mirror_action = self._action("&Mirror (flip left–right) in the karyogram", ws.mirror_selected, "M",
                                          tip="Show the selected chromosome as its mirror image in the karyogram "
                                              "(again: back); undoable")
        cell.addAction(self.mirror_action)
        cell.addSeparator()
        self.knife_action = self._action("&Split with a knife line", self.image_view.set_knife_mode, "K", checkable=True,
                                         tip="Drag a straight line across a box to cut its chromosome in two "
                                             "(Esc leaves the knife); undoable")
        cell.addAction(self.knife_action)
        self.join_action = self._action("&Join into one chromosome", ws.join_selected, "J",
                                        tip="Select a chromosome, Ctrl+click a second one, then Join: "
                                            "one box and outline over both; undoable")
        cell.addAction(self.join_action)
        self.brush_action = self._action("&Brush the outline", self._brush_toggled, "Shift+B", checkable=True,
                                         tip="Paint the selected chromosome's outline: drag to add, Shift+drag or "
                                             "right-drag to erase, [ and ] size the brush (Esc stops); undoable")
        cell.addAction(self.brush_action)
        self.brush_smaller_action = self._action("Brush smaller", lambda: self.image_view.tools.grow(-1), "[")
        self.brush_larger_action = self._action("Brush larger", lambda: self.image_view.tools.grow(+1), "]")
        cell.addAction(self.brush_smaller_action)
        cell.addAction(self.brush_larger_action)
        self.polygon_action = self._action("&Redraw outline (polygon)", self._polygon_toggled, "P", checkable=True,
                                           tip="Click round the selected chromosome point by point: its new "
                                               "outline (double-click or Enter closes it, Esc cancels); undoable")
        cell.addAction(self.polygon_action)
        cell.addSeparator()
        self.not_analysable_action = self._action(
            "Cell not &analysable", lambda on: (ws.set_cell_note(on, ws.cell.doc.comment if ws.cell else ""),
                                                self._update_review()),  # refused (read-only, signed off): unticked
            checkable=True, tip="This spread cannot be karyotyped (overlaps, poor banding, broken)")
        cell.addAction(self.not_analysable_action)
        cell.addAction(self._action("Co&mment on the cell…", self.comment_dialog))
        cell.addSeparator()
        cell.addAction(self._action("&Next cell", lambda: ws.step_cell(+1), "Ctrl+PgDown"))
        cell.addAction(self._action("&Previous cell", lambda: ws.step_cell(-1), "Ctrl+PgUp"))

        tools = m.addMenu("&Tools")
        tools.addAction(self._action("&Train model…", self.train_dialog))
        tools.addAction(self._action("Choose &model…", self.choose_model_dialog))
        tools.addAction(self._action("&Preferences…", self.preferences_dialog, QKeySequence.StandardKey.Preferences))

        help_ = m.addMenu("&Help")
        help_.addAction(self._action("&Keyboard", self.keyboard_help, QKeySequence.StandardKey.HelpContents))
        help_.addAction(self._action("&About ChromoDesk", self.about))
        help_.addAction(self._action("Open &log folder", lambda: QDesktopServices.openUrl(
            QUrl.fromLocalFile(str(log_dir())))))

    # -- slots ----------------------------------------------------------------------------------------------
    def _select(self, record_id) -> None:
        if self.workspace.cell is not None:
            self.workspace.cell.select(record_id)

    def _select_also(self, record_id) -> None:
        cell = self.workspace.cell
        if cell is not None:
            cell.select_also(record_id)
            if cell.partner is not None:
                self.statusBar().showMessage(f"{cell.selected} and {cell.partner} picked: Cell ▸ Join into one "
                                             "chromosome (J) makes them one", 8000)

    def _knife_mode_changed(self, on: bool) -> None:
        self._show_tool_hint()

    def _brush_toggled(self, on: bool) -> None:
        if on and not self._has_selection("Brush"):
            self.brush_action.setChecked(False)
            return
        self.image_view.set_brush_mode(on)

    def _polygon_toggled(self, on: bool) -> None:
        if on and not self._has_selection("Redraw outline"):
            self.polygon_action.setChecked(False)
            return
        self.image_view.set_polygon_mode(on)

    def _has_selection(self, what: str) -> bool:
        cell = self.workspace.cell
        if cell is not None and cell.selected is not None:
            return True
        self.statusBar().showMessage(f"{what}: select a chromosome first (click its box, its row or its karyogram "
                                     "picture), then choose it again", 10000)
        return False

    def _polygon_drawn(self, points) -> None:
        if self.workspace.redraw_outline(points):
            self.image_view.set_polygon_mode(False)  # one outline per P; a refused one may be drawn again

    TOOL_HINTS = ("Brush:", "Redraw outline:", "Knife:")

    def _show_tool_hint(self, *_) -> None:
        """What to do in brush, polygon or knife mode, until the mode ends (then the hint goes)."""
        tools, cell = self.image_view.tools, self.workspace.cell
        target = cell.selected if cell is not None and cell.selected else "no chromosome (select one)"
        if tools.brush:
            self.statusBar().showMessage(
                f"Brush: {tools.radius:g} px on {target}: drag to paint its outline, Shift/right-drag erases; "
                "[ ] size; Esc leaves", 0)
        elif tools.polygon:
            self.statusBar().showMessage(
                f"Redraw outline: {target}: click round it point by point; double-click or Enter closes, "
                "Esc cancels", 0)
        elif self.image_view.viewbox.knife_mode:
            self.statusBar().showMessage("Knife: drag a line across a chromosome to cut it in two; Esc leaves", 0)
        elif self.statusBar().currentMessage().startswith(self.TOOL_HINTS):
            self.statusBar().clearMessage()

    def _cell_changed(self, cell) -> None:
        for view in (self.image_view, self.table, self.karyogram, self.counts, self.palette):
            view.set_cell(cell)
        self.central.setCurrentWidget(self.image_view if cell is not None else self.start_panel)
        if cell is None:
            self.start_panel.set_recent(self.prefs.recent)
        has = cell is not None
        for action in (self.export_action, self.draw_action, self.delete_action, self.not_analysable_action,
                       self.turn_action, self.knife_action, self.join_action, self.mirror_action, self.brush_action,
                       self.polygon_action):
            action.setEnabled(has)
        if cell is None:
            self.image_view.set_brush_mode(False)
            self.image_view.set_polygon_mode(False)
            self.setWindowTitle("ChromoDesk")
            self.review_label.setText("")
            self._show_read_only()
            return
        cell.changed.connect(self._update_review_soon)
        cell.selectionChanged.connect(self.keys.clear)
        cell.selectionChanged.connect(self._show_tool_hint)
        self._update_review()
        position = ""
        if cell.image_path in self.workspace.case:
            position = f" ({self.workspace.case.index(cell.image_path) + 1}/{len(self.workspace.case)})"
        self.setWindowTitle(f"ChromoDesk — {cell.image_path.name}{position}")
        self._show_read_only()
        self.case_list.show_current(cell.image_path)

    def _show_read_only(self) -> None:
        """The cell is edited in another window or process: say so in the title and the status bar."""
        cell = self.workspace.cell
        read_only = cell is not None and cell.read_only
        self.read_only_label.setVisible(read_only)
        if read_only:
            self.read_only_label.setToolTip(f"Open for editing in {cell.blocked_by.describe()}: nothing is saved "
                                            "from this window. Close it there, then edit here.")
            if "[read-only]" not in self.windowTitle():
                self.setWindowTitle(self.windowTitle() + " [read-only]")

    def _update_review(self, *_):
        cell = self.workspace.cell
        if cell is None:
            return
        # out of the chromosomes: a purple box is no chromosome to confirm, so Accept all reaches n/n
        chromosomes = cell.doc.chromosomes()
        done = sum(1 for r in chromosomes if r.confirmed)
        self.review_label.setText(("NOT ANALYSABLE · " if cell.doc.not_analysable else "")
                                  + f"Reviewed {done}/{len(chromosomes)}")
        self.not_analysable_action.blockSignals(True)
        self.not_analysable_action.setChecked(cell.doc.not_analysable)
        self.not_analysable_action.blockSignals(False)

    def _case_state(self) -> dict | None:
        from chromodesk.core.case import case_state

        folder = self.workspace.case_folder
        try:
            return case_state(folder) if folder is not None else None
        except Exception as exc:  # noqa: BLE001 - a damaged case file: say so, keep reviewing
            self.statusBar().showMessage(str(exc), 15000)
            return None

    def _case_changed(self, images) -> None:
        self.case_panel.set_case(images, self._case_state())
        self.case_dock.show()

    def _refresh_case(self) -> None:
        self.case_panel.refresh(self._case_state())

    def sign_off_dialog(self) -> None:
        cell = self.workspace.cell
        unreviewed = len(cell.doc.unreviewed()) if cell is not None else 0
        answer = QMessageBox.question(self, "Sign off the case", (
            f"Sign off this case as {self.prefs.reviewer}?\n\nAfterwards every edit needs Reopen… in the Case panel, which is "
            "recorded." + (f"\n\nThe open cell still has {unreviewed} unconfirmed label(s)." if unreviewed else "")))
        if answer == QMessageBox.StandardButton.Yes:
            self.workspace.sign_off_case()

    def reopen_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        reason, ok = QInputDialog.getText(self, "Reopen the case", "Why is the signed-off case reopened? (recorded)")
        if ok:
            self.workspace.reopen_case(reason.strip())

    def _saved(self, path) -> None:
        cell = self.workspace.cell
        if cell is not None:
            self.case_list.update_status(cell.image_path, cell.doc)
            if cell.image_path in self.workspace.case:
                self._refresh_case_soon()

    MODEL_LABEL_WIDTH = 200  # px in the status bar: at 1024 px wide a tool's hint fits beside it

    def _fit_message(self, text: str) -> None:
        """A message too long for the room beside the review, model and device labels takes the whole
        bar while it shows (cut, it would lose its end, which says what to do); they come back after."""
        bar, info = self.statusBar(), (self.review_label, self.model_label, self.device_label)
        others = [w for w in (self.progress, self.cancel_button, self.read_only_label) if w.isVisible()]
        room = bar.width() - sum(w.sizeHint().width() + 8 for w in (*others, *info)) - 16
        wide = bool(text) and bar.fontMetrics().horizontalAdvance(text) > room
        for w in info:
            w.setVisible(not wide)

    def _model_changed(self, classifier, text: str) -> None:
        if classifier is None:
            self.model_label.setText("No model" if "Loading" not in text else "Loading model…")
            self.device_label.setText("")
            self.model_label.setToolTip(text)
            if "Loading" not in text:
                self.statusBar().showMessage(text, 0)
            return
        # a real model's id is long: elided here (whole in the tooltip), the message keeps its room
        self.model_label.setText(self.model_label.fontMetrics().elidedText(
            f"Model: {classifier.model_id}", Qt.TextElideMode.ElideRight, self.MODEL_LABEL_WIDTH))
        self.model_label.setToolTip(text)
        self.device_label.setText(f"Device: {device_name(classifier)}")
        if not self.statusBar().currentMessage():  # the model is named on the right; keep what the user is reading
            self.statusBar().showMessage(text, 8000)

    def _progress(self, what: str, done: int, total: int) -> None:
        self.progress.show()
        self.cancel_button.setVisible(self.workspace.is_classifying())
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(done)
        self.progress.setFormat(f"{what} %p%" if total else what)

    def _idle(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()

    def report_error(self, summary: str, details: str = "") -> None:
        if self.headless:
            log.error("%s\n%s", summary, details)
            self.errors.append(summary)
            return
        show_error(self, summary, details)

    # -- dialogs ------------------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        start = str(Path(self.prefs.recent[0]).parent) if self.prefs.recent else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open metaphase image", start, IMAGE_FILTER)
        if path:
            self.workspace.open_image(path)

    def open_folder_dialog(self) -> None:
        recent = self.prefs.recent
        start = str(Path(recent[0]).parent.parent if Path(recent[0]).is_file() else Path(recent[0]).parent) if recent else ""
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of cells", start)  # where the last cell was
        if folder:
            self.workspace.open_folder(folder)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.prefs.recent:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.workspace.open_path(p))
        if not self.prefs.recent:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def export_dialog(self) -> ExportDialog | None:
        cell = self.workspace.cell
        if cell is None:
            return None
        dialog = ExportDialog(cell.doc, cell.image_path.parent / "chromodesk-export", self)
        dialog.accepted.connect(lambda: self.workspace.export(dialog.out_dir(), dialog.formats()))
        dialog.open()
        return dialog

    def _exported(self, written) -> None:
        folder = Path(next(iter(written.values()))).parent if written else ""
        self.statusBar().showMessage(f"Exported {', '.join(written)} to {folder}", 15000)

    def preferences_dialog(self) -> PreferencesDialog:
        dialog = PreferencesDialog(self.prefs, self)
        dialog.accepted.connect(lambda: dialog.apply() and self.workspace.load_model())
        dialog.open()
        return dialog

    def choose_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose model bundle", self.prefs.model, "Model bundle (*.json)")
        if path:
            self.use_model(path)

    def use_model(self, path: str) -> None:
        self.prefs.model = path
        self.prefs.sync()
        self.workspace.load_model()

    def train_dialog(self):
        from .train_dialog import TrainDialog

        current = self.workspace.classifier_path()
        dialog = TrainDialog(self.workspace.case, self, current_model=current)
        dialog.modelReady.connect(lambda path: self._offer_model(path, dialog.comparison))
        dialog.show()
        return dialog

    def _offer_model(self, path: str, comparison: str = "") -> None:
        detail = f"\n\nMeasured {comparison}." if comparison else ""
        answer = QMessageBox.question(self, "New model", f"Training finished.{detail}\n\nUse the new model {path}?")
        if answer == QMessageBox.StandardButton.Yes:
            self.use_model(path)

    KEYS = (("1…22, X, Y then Enter", "label the selected chromosome"), ("Space", "accept its label"),
            ("Tab", "next least confident"), ("N", "not a chromosome (again: bring it back)"),
            ("T", "turn the selected chromosome 180° in the karyogram (or double-click it there)"),
            ("Ctrl+Shift+A", "accept all"), ("Ctrl+Backspace", "clear a confirmation"), ("Delete", "delete the box"),
            ("B", "draw one box (hold Shift to draw more; Esc stops)"), ("F", "fit the image"),
            ("K", "knife: drag a line across a chromosome to split it in two (Esc stops)"),
            ("Ctrl+click, J", "pick a second chromosome, then join the two into one"),
            ("Shift+B", "brush: drag to paint the selected chromosome's outline, Shift+drag or right-drag to "
                        "erase, [ ] size (Esc stops)"),
            ("P", "redraw the selected chromosome's outline: click its points (Backspace takes the last one "
                  "back), double-click or Enter closes"),
            ("M", "mirror the selected chromosome left–right in the karyogram"),
            ("Ctrl+D", "detect the chromosomes again"), ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo"),
            ("Ctrl+PgDown / Ctrl+PgUp", "next / previous cell of the case"))

    def about(self) -> None:
        from chromodesk.cli import version_text

        QMessageBox.about(self, "About ChromoDesk", version_text().replace("; ", "\n")
                          + "\n\nKaryotyping: detect, classify and review the chromosomes of a metaphase.")

    def comment_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        cell = self.workspace.cell
        if cell is None:
            return
        text, ok = QInputDialog.getMultiLineText(self, "Comment on the cell", cell.image_path.name, cell.doc.comment)
        if ok:
            self.workspace.set_cell_note(cell.doc.not_analysable, text.strip())

    def keyboard_help(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in self.KEYS)
        QMessageBox.information(self, "Keyboard", (
            "<p>Click a box, a table row or a karyogram chromosome to select it.</p>"
            f"<table>{rows}</table>"
            "<p>Drag a chromosome from the karyogram or the table onto a slot to relabel it.</p>"))

    # -- drag and drop of files ------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.workspace.open_path(urls[0])
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:
        self.save_layout()
        QApplication.instance().removeEventFilter(self.keys)
        self.workspace.shutdown()
        super().closeEvent(event)


__all__ = ["MainWindow"]
