"""The live karyogram (the export's own renderer) with counts, flags and the ISCN formula.

The picture comes from ``core.export.layout_karyogram`` in a background job, with the
rectangle of every chromosome and slot; a click maps back through those rectangles to
a record id. Dragging a chromosome (from here, or a table row) onto another slot
relabels it; a double-click (or its context menu's "Turn 180°") turns it end over end, and the
context menu's "Mirror" flips it left-right.
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import QMimeData, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QDrag, QFont, QGuiApplication, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QLabel, QMenu, QSizePolicy, QVBoxLayout, QWidget

from . import style
from .coalesce import NextTurn

MIME = "application/x-chromodesk-record"


class KaryogramView(QWidget):
    selectRequested = Signal(object)  # record id
    labelDropped = Signal(str, str)  # record id, label
    turnRequested = Signal(str)  # record id: turn it 180 degrees
    mirrorRequested = Signal(str)  # record id: flip it left-right

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(260, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAcceptDrops(True)
        self.setMouseTracking(True)
        self._pixmap: QPixmap | None = None
        self._size = (1, 1)
        self.placements: dict[str, tuple[int, int, int, int]] = {}
        self.slots: dict[str, tuple[int, int, int, int]] = {}
        self.selected: str | None = None
        self._press: QPoint | None = None
        self._press_id: str | None = None
        self._drop_slot: str | None = None
        self.cell = None

    def set_cell(self, cell) -> None:
        if self.cell is not None:
            self.cell.selectionChanged.disconnect(self.show_selection)
        self.cell = cell
        self._pixmap = None
        self.placements, self.slots = {}, {}
        self.selected = None
        if cell is not None:
            cell.selectionChanged.connect(self.show_selection)
            self.selected = cell.selected
        self.update()

    def set_result(self, result) -> None:
        """A ``jobs.KaryogramResult``: picture, slot and chromosome rectangles."""
        rgb = np.ascontiguousarray(result.image)
        h, w, _ = rgb.shape
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self._pixmap = QPixmap.fromImage(image.copy())
        self._size = (w, h)
        self.placements = dict(result.placements)
        self.slots = dict(result.slots)
        self.update()

    def show_selection(self, record_id) -> None:
        self.selected = record_id
        self.update()

    # -- geometry ---------------------------------------------------------------------------------------
    def _target(self) -> QRectF:
        w, h = self._size
        scale = min(self.width() / w, self.height() / h)
        tw, th = w * scale, h * scale
        return QRectF((self.width() - tw) / 2, 0, tw, th)  # top-aligned: spare room falls below

    def to_picture(self, pos: QPointF) -> tuple[float, float]:
        t = self._target()
        s = t.width() / self._size[0]
        return (pos.x() - t.left()) / s, (pos.y() - t.top()) / s

    def to_widget(self, rect: tuple[int, int, int, int]) -> QRectF:
        t = self._target()
        s = t.width() / self._size[0]
        x0, y0, x1, y1 = rect
        return QRectF(t.left() + x0 * s, t.top() + y0 * s, (x1 - x0) * s, (y1 - y0) * s)

    def record_at(self, pos: QPointF, pad: float = 4.0) -> str | None:
        x, y = self.to_picture(pos)
        best, best_d = None, None
        for rid, (x0, y0, x1, y1) in self.placements.items():
            if x0 - pad <= x <= x1 + pad and y0 - pad <= y <= y1 + pad:
                d = abs(x - (x0 + x1) / 2)
                if best_d is None or d < best_d:
                    best, best_d = rid, d
        return best

    def slot_at(self, pos: QPointF) -> str | None:
        x, y = self.to_picture(pos)
        for label, (x0, y0, x1, y1) in self.slots.items():
            if x0 <= x <= x1 and y0 <= y <= y1:
                return label
        return None

    # -- painting ----------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(255, 255, 255))
        if self._pixmap is None:
            p.setPen(QColor(120, 120, 120))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "Karyogram" if self.cell is None else "Arranging the karyogram…")
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawPixmap(self._target(), self._pixmap, QRectF(0, 0, *self._size))
        if self._drop_slot in self.slots:
            p.setPen(QPen(style.SELECTED, 2, Qt.PenStyle.DashLine))
            p.drawRect(self.to_widget(self.slots[self._drop_slot]))
        if self.selected in self.placements:
            pen = QPen(QColor(230, 160, 0), 3)
            p.setPen(pen)
            p.drawRect(self.to_widget(self.placements[self.selected]).adjusted(-3, -3, 3, 3))

    # -- mouse: click selects, drag onto a slot relabels ----------------------------------------------------
    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._pixmap is not None:
            rid = self.record_at(event.position())
            self._press, self._press_id = event.position().toPoint(), rid
            if rid is not None:
                self.selectRequested.emit(rid)

    def mouseMoveEvent(self, event) -> None:
        if self._pixmap is not None and not event.buttons():
            rid = self.record_at(event.position())
            record = self.cell.doc.records.get(rid) if (rid and self.cell is not None) else None
            self.setToolTip(style.tooltip(record) if record is not None else "")
            return
        if self._press_id is None or self._press is None:
            return
        if (event.position().toPoint() - self._press).manhattanLength() < 8:
            return
        drag = QDrag(self)
        mime = QMimeData()
        mime.setData(MIME, self._press_id.encode())
        drag.setMimeData(mime)
        self._press_id = None
        drag.exec(Qt.DropAction.MoveAction)

    def mouseReleaseEvent(self, event) -> None:
        self._press = self._press_id = None

    def mouseDoubleClickEvent(self, event) -> None:
        rid = self.record_at(event.position()) if self._pixmap is not None else None
        if event.button() == Qt.MouseButton.LeftButton and rid is not None:
            self.turnRequested.emit(rid)

    def contextMenuEvent(self, event) -> None:
        rid = self.record_at(QPointF(event.pos())) if self._pixmap is not None else None
        if rid is None:
            return
        self.selectRequested.emit(rid)
        menu = QMenu(self)
        # after the tab: the key that does the same (Cell menu), shown as Qt shows shortcuts but not
        # bound a second time here
        menu.addAction("Turn 180°\tT", lambda: self.turnRequested.emit(rid))
        menu.addAction("Mirror (flip left–right)\tM", lambda: self.mirrorRequested.emit(rid))
        self.popup(menu, event.globalPos())

    def popup(self, menu: QMenu, where: QPoint) -> None:
        menu.exec(where)  # modal; a test replaces it

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasFormat(MIME):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        slot = self.slot_at(event.position())
        if slot != self._drop_slot:
            self._drop_slot = slot
            self.update()
        if slot is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:
        self._drop_slot = None
        self.update()

    def dropEvent(self, event) -> None:
        self._drop_slot = None
        self.update()
        rid = bytes(event.mimeData().data(MIME)).decode()
        if self.drop_record(rid, event.position()):
            event.acceptProposedAction()

    def drop_record(self, record_id: str, pos: QPointF) -> bool:
        """Relabel ``record_id`` as the slot under ``pos`` (the drop handler; also used by tests)."""
        slot = self.slot_at(pos)
        if slot is None or not record_id:
            return False
        self.labelDropped.emit(record_id, slot)
        return True


class CountsPanel(QWidget):
    """ISCN formula, review progress and flags. (The count of every class is on the karyogram itself.)"""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.iscn = QLabel("—")
        font = QFont(self.iscn.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self.iscn.setFont(font)
        # shown with break opportunities after its commas (so it wraps instead of widening the dock);
        # copied plain, from the context menu, so that a LIMS gets the formula without hidden characters
        self.iscn.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        copy = QAction("Copy karyotype", self.iscn)
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(self.iscn_text))
        self.iscn.addAction(copy)
        self.iscn_text = ""
        self.iscn.setWordWrap(True)  # a long formula (many flags) wraps at its commas instead of widening the dock
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.flags = QLabel("")
        self.flags.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        # the formula has the dock's whole width: beside the summary, a narrow dock (1024 px screen)
        # broke "45,XY,-8" after every comma
        layout.addWidget(self.iscn)
        layout.addWidget(self.summary)
        layout.addWidget(self.flags)
        self.cell = None
        self.refresh_soon = NextTurn(self, self.refresh)

    def set_cell(self, cell) -> None:
        if self.cell is not None:
            self.cell.changed.disconnect(self.refresh_soon)
        self.cell = cell
        if cell is not None:
            cell.changed.connect(self.refresh_soon)
        self.refresh()

    def refresh(self, *_):
        cell = self.cell
        if cell is None:
            self.iscn_text = ""
            self.iscn.setText("—")
            self.summary.setText("")
            self.flags.setText("")
            return
        counts = cell.counts()
        total = len(cell.doc.chromosomes())
        rejected = len(cell.doc) - total
        confirmed = sum(1 for r in cell.doc if r.confirmed)
        unlabelled = total - sum(counts.values())
        summary = (f"{total} chromosomes · {confirmed} confirmed" + (f" · {unlabelled} unlabelled" if unlabelled else "")
                   + (f" · {rejected} not a chromosome" if rejected else ""))
        if cell.doc.not_analysable:
            summary = "<b style='color:#c00000'>not analysable</b> · " + summary
        if cell.doc.comment:
            summary += f" · “{html.escape(cell.doc.comment[:60])}{'…' if len(cell.doc.comment) > 60 else ''}”"
        if not any(counts.values()):
            # nothing is labelled yet: a formula of zeros with 24 flags would only alarm
            self.iscn_text = ""
            self.iscn.setText("classifying…" if total else "no chromosomes")
            self.iscn.setToolTip("The karyotype appears once the chromosomes have labels")
            self.summary.setText(summary)
            self.flags.setText("")
            return
        flags = cell.flags()
        iscn = self.iscn_text = cell.iscn()
        self.iscn.setText(iscn.replace(",", ",\u200b"))
        self.iscn.setToolTip(f"{iscn}: suggested ISCN karyotype for numerical findings (from the labels shown)")
        self.summary.setText(summary)
        texts = []
        for f in flags:
            if f["type"] == "gain":
                texts.append(f"+{f['label']} ({f['count']} copies)")
            elif f["type"] == "loss":
                texts.append(f"−{f['label']} ({f['count']} cop{'y' if f['count'] == 1 else 'ies'})")
            elif f["type"] == "sex":
                texts.append(f"sex chromosomes {f['label']}")
            elif f["type"] == "total":
                texts.append(f"total {f['count']} ≠ 46")
        if texts:
            self.flags.setText("<span style='color:#c00000'><b>Flags:</b> " + " · ".join(texts) + "</span>")
        else:
            self.flags.setText("<span style='color:#1a7f37'><b>No numerical flags</b> (2 of each autosome, "
                               f"{'XX' if counts['X'] == 2 else 'XY'}, 46 in total)</span>")
