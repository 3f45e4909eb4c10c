"""What the window shows before any image is open: how to open one, the recent files, and that
images and folders can be dropped here."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QPushButton, QHBoxLayout, QVBoxLayout, QWidget


class StartPanel(QWidget):
    openImageClicked = Signal()
    openFolderClicked = Signal()
    recentChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        title = QLabel("<h2>ChromoDesk</h2>Open a metaphase image to classify and review its chromosomes. "
                       "Boxes come from a Pascal VOC file beside the image, or the detector finds them.")
        title.setWordWrap(True)
        self.open_image = QPushButton("Open image…  (Ctrl+O)")
        self.open_folder = QPushButton("Open folder as case…  (Ctrl+Shift+O)")
        self.open_image.clicked.connect(self.openImageClicked.emit)
        self.open_folder.clicked.connect(self.openFolderClicked.emit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_image)
        buttons.addWidget(self.open_folder)
        buttons.addStretch(1)
        drop = QLabel("…or drop an image or a folder anywhere on this window.")
        self.recent = QListWidget()
        self.recent.setMaximumHeight(180)
        self.recent.itemActivated.connect(lambda item: self.recentChosen.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.recent_title = QLabel("<b>Recent</b> (double-click or Enter to open)")
        inner = QVBoxLayout()
        inner.addWidget(title)
        inner.addLayout(buttons)
        inner.addWidget(drop)
        inner.addSpacing(12)
        inner.addWidget(self.recent_title)
        inner.addWidget(self.recent)
        box = QWidget()
        box.setLayout(inner)
        box.setMaximumWidth(640)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        outer.addWidget(box, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(2)

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for p in paths:
            item = QListWidgetItem(f"{Path(p).name}  —  {Path(p).parent}")
            item.setData(Qt.ItemDataRole.UserRole, p)
            item.setToolTip(p)
            self.recent.addItem(item)
        self.recent_title.setVisible(bool(paths))
        self.recent.setVisible(bool(paths))
