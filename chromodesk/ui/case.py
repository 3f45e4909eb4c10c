"""A folder opened as a case: its cells with their review status, next/previous."""

from __future__ import annotations

from pathlib import Path

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from .workspace import session_path_for

PATH_ROLE = Qt.ItemDataRole.UserRole + 1


def cell_status(doc) -> tuple[int, int] | str | None:
    """(confirmed, total), "not analysable", or None for a cell never opened (no document)."""
    if doc is None:
        return None
    if doc.not_analysable:
        return "not analysable"
    return sum(1 for r in doc if r.confirmed), len(doc)


def iscn_of(doc) -> str:
    from chromodesk.core.karyotype import iscn_string

    return iscn_string(doc.counts())


def status_text(status: tuple[int, int] | str | None) -> tuple[str, QColor]:
    if status is None:
        return "not started", QColor(130, 130, 130)
    if isinstance(status, str):
        return status, QColor(160, 0, 0)
    done, total = status
    if total and done == total:
        return "reviewed", QColor(26, 127, 55)
    return f"{done}/{total} confirmed", QColor(200, 110, 0)


def load_doc(image_path: Path):
    path = session_path_for(image_path)
    if path is None or not path.is_file():
        return None
    try:
        from chromodesk.core.session import load_session

        return load_session(path)
    except Exception:  # noqa: BLE001 - the panel must not fail on a damaged session
        return None


TICK_TIP = "Tick: this cell's karyogram goes into the case report"


class CaseList(QListWidget):
    openRequested = Signal(object)  # Path
    inReportChanged = Signal(object, bool)  # Path, whether its karyogram goes into the report

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.itemActivated.connect(lambda item: self.openRequested.emit(item.data(PATH_ROLE)))
        self.itemClicked.connect(lambda item: self.openRequested.emit(item.data(PATH_ROLE)))
        self.itemChanged.connect(self._checked)
        self._filling = False

    def _checked(self, item: QListWidgetItem) -> None:
        if not self._filling:
            self.inReportChanged.emit(item.data(PATH_ROLE), item.checkState() == Qt.CheckState.Checked)

    def set_case(self, images: list[Path]) -> None:
        self._filling = True
        self.clear()
        for path in images:
            item = QListWidgetItem()
            item.setData(PATH_ROLE, path)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            self.addItem(item)
            self._show(item, load_doc(path))
        self._filling = False

    def _show(self, item: QListWidgetItem, doc) -> None:
        """One cell's line from its document (the saved session, or the open cell's live one)."""
        self._filling, was = True, self._filling
        text, colour = status_text(cell_status(doc))
        detail = f"{len(doc.chromosomes())}, {iscn_of(doc)}  ·  " if doc is not None and doc.records else ""
        item.setText(f"{item.data(PATH_ROLE).name}  —  {detail}{text}")
        item.setForeground(colour)
        item.setToolTip(TICK_TIP)
        item.setCheckState(Qt.CheckState.Checked if doc is not None and doc.in_report else Qt.CheckState.Unchecked)
        self._filling = was

    def update_status(self, image_path: Path, doc) -> None:
        for i in range(self.count()):
            item = self.item(i)
            if Path(item.data(PATH_ROLE)) == Path(image_path):
                self._show(item, doc)

    def show_current(self, image_path: Path | None) -> None:
        for i in range(self.count()):
            item = self.item(i)
            if image_path is not None and Path(item.data(PATH_ROLE)) == Path(image_path):
                self.blockSignals(True)
                self.setCurrentItem(item)
                self.blockSignals(False)
                self.scrollToItem(item)
                return
        self.clearSelection()  # an image from elsewhere is open: no cell of the case is current
        self.setCurrentItem(None)


class CasePanel(QWidget):
    """The case: its karyotype and summary, its cells (count, karyotype, review state, in the
    report or not), classify every cell, sign off / reopen."""

    classifyAllClicked = Signal()
    signOffClicked = Signal()
    reopenClicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.header = QLabel("")
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.list = CaseList()
        self.classify_all = QPushButton("Classify all cells")
        self.classify_all.setToolTip("Detect, classify and save every cell not yet opened, in the background")
        self.sign_button = QPushButton("Sign off…")
        self.classify_all.clicked.connect(self.classifyAllClicked.emit)
        self.sign_button.clicked.connect(lambda: (self.reopenClicked if self.signed else self.signOffClicked).emit())
        buttons = QHBoxLayout()
        buttons.addWidget(self.classify_all)
        buttons.addWidget(self.sign_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.signed = None
        self.images: list[Path] = []

    def set_case(self, images: list[Path], state: dict | None = None) -> None:
        self.images = list(images)
        self.list.set_case(images)
        self.refresh(state)

    def refresh(self, state: dict | None = None) -> None:
        """Summary from the cells' saved sessions (``core.case``), and the sign-off state."""
        from chromodesk.core.case import CaseSummary, CellEntry

        docs = [load_doc(p) for p in self.images]
        entries = [CellEntry.from_doc(d) for d in docs if d is not None and d.records]
        summary = CaseSummary(self.images[0].parent.name if self.images else "", entries)
        data = summary.to_json()
        s = data["summary"]
        self.signed = (state or {}).get("signed_off")
        parts = [f"<b style='font-size:large'>{html.escape(data['iscn']) or '—'}</b>",
                 f"{len(self.images)} cells · {s['counted']} counted · {s['analysed']} analysed · "
                 f"{s['karyotyped']} for the report" + (f" · modal {s['modal_number']}" if s['modal_number'] else "")]
        if s["warnings"]:
            parts.append("<span style='color:#b00000'>" + "<br>".join(html.escape(w) for w in s["warnings"][:4]) + "</span>")
        if self.signed:
            parts.append(f"<b style='color:#1a4fc0'>Signed off by {html.escape(self.signed['by'])}, "
                         f"{self.signed['at'][:16].replace('T', ' ')} UTC</b>")
        self.header.setText("<br>".join(parts))
        self.sign_button.setText("Reopen…" if self.signed else "Sign off…")
        doubted: dict[str, list[str]] = {}
        for d in s["doubtful_readings"]:
            doubted.setdefault(d["image"], []).append(f"could read {d['could_read']} ({d['nats']:.1f} nats more): "
                                                      f"the case would read {d['case_would_read']}")
        for i, doc in enumerate(docs):  # each session read once per refresh
            item = self.list.item(i)
            self.list._show(item, doc)
            if item.data(PATH_ROLE).name in doubted:  # the case karyotype hangs on this cell's reading
                item.setText("⚠ " + item.text())
                item.setToolTip("\n".join(doubted[item.data(PATH_ROLE).name]))
