"""A folder opened as a case: its cells with their review status, next/previous."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from .workspace import session_path_for

PATH_ROLE = Qt.ItemDataRole.UserRole + 1


def review_status(image_path: Path) -> tuple[int, int] | str | None:
    """(confirmed, total) from the saved session, "not analysable", or None if never opened."""
    path = session_path_for(image_path)
    if path is None or not path.is_file():
        return None
    try:
        from chromodesk.core.session import load_session

        doc = load_session(path)
    except Exception:  # noqa: BLE001 - a list entry must not fail on a damaged session
        return None
    if doc.not_analysable:
        return "not analysable"
    return sum(1 for r in doc if r.confirmed), len(doc)


def status_text(status: tuple[int, int] | str | None) -> tuple[str, QColor]:
    if status is None:
        return "not started", QColor(130, 130, 130)
    if isinstance(status, str):
        return status, QColor(160, 0, 0)
    done, total = status
    if total and done == total:
        return "reviewed", QColor(26, 127, 55)
    return f"{done}/{total} confirmed", QColor(200, 110, 0)


class CaseList(QListWidget):
    openRequested = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.itemActivated.connect(lambda item: self.openRequested.emit(item.data(PATH_ROLE)))
        self.itemClicked.connect(lambda item: self.openRequested.emit(item.data(PATH_ROLE)))

    def set_case(self, images: list[Path]) -> None:
        self.clear()
        for path in images:
            item = QListWidgetItem()
            item.setData(PATH_ROLE, path)
            self.addItem(item)
            self._show(item, review_status(path))

    def _show(self, item: QListWidgetItem, status) -> None:
        text, colour = status_text(status)
        item.setText(f"{item.data(PATH_ROLE).name}  —  {text}")
        item.setForeground(colour)

    def update_status(self, image_path: Path, status: tuple[int, int] | str) -> None:
        for i in range(self.count()):
            item = self.item(i)
            if Path(item.data(PATH_ROLE)) == Path(image_path):
                self._show(item, status)

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
