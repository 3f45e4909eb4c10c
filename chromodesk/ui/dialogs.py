"""Small dialogs: export, preferences. (Training has its own module, ``train_dialog``.)"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .settings import DEVICES, Preferences

FORMATS = (("csv", "CSV table (one row per chromosome)"), ("karyogram", "Karyogram PNG"),
           ("annotated", "Annotated image PNG"), ("voc", "Pascal VOC XML with the final labels"),
           ("outlines", "Chromosome outlines JSON (beside the VOC boxes)"))


def _folder_row(edit: QLineEdit, parent: QWidget, title: str) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    browse = QPushButton("Browse…")

    def pick():
        folder = QFileDialog.getExistingDirectory(parent, title, edit.text())
        if folder:
            edit.setText(folder)

    browse.clicked.connect(pick)
    row.addWidget(browse)
    return row


class ExportDialog(QDialog):
    """Choose formats and a folder; warns when chromosomes are still unreviewed."""

    def __init__(self, doc, default_dir: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export")
        layout = QVBoxLayout(self)
        self.checks: dict[str, QCheckBox] = {}
        for key, text in FORMATS:
            check = QCheckBox(text)
            check.setChecked(True)
            self.checks[key] = check
            layout.addWidget(check)
        self.folder = QLineEdit(str(default_dir))
        self.folder.setMinimumWidth(self.folder.fontMetrics().horizontalAdvance(str(default_dir)) + 24)  # the whole path shows
        layout.addWidget(QLabel("Folder:"))
        layout.addLayout(_folder_row(self.folder, self, "Export to"))
        unreviewed = len(doc.unreviewed())
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        if unreviewed:
            self.warning.setText(f"<span style='color:#c00000'><b>{unreviewed} of {len(doc)} chromosomes are not "
                                 "reviewed.</b> Their labels are the software's suggestions; the CSV marks them as "
                                 "unconfirmed.</span>")
        else:
            self.warning.setText(f"All {len(doc)} chromosomes are confirmed.")
        layout.addWidget(self.warning)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.unreviewed = unreviewed

    def formats(self) -> tuple[str, ...]:
        return tuple(k for k, c in self.checks.items() if c.isChecked())

    def out_dir(self) -> Path:
        return Path(self.folder.text()).expanduser()


class PreferencesDialog(QDialog):
    def __init__(self, prefs: Preferences, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.prefs = prefs
        form = QFormLayout()
        self.reviewer = QLineEdit(prefs.reviewer)
        self.reviewer.setToolTip("Recorded with every label you confirm")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(prefs.device)
        self.model = QLineEdit(prefs.model)
        self.model.setPlaceholderText("bundled default (models/chromodesk-resnet18.json)")
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(browse)
        form.addRow("Reviewer name", self.reviewer)
        form.addRow("Device", self.device)
        form.addRow("Model bundle", row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model bundle", self.model.text(), "Model bundle (*.json)")
        if path:
            self.model.setText(path)

    def apply(self) -> bool:
        """Store the values; True when the model or device changed (the model must be reloaded)."""
        reload = self.device.currentText() != self.prefs.device or self.model.text().strip() != self.prefs.model
        self.prefs.reviewer = self.reviewer.text()
        self.prefs.device = self.device.currentText()
        self.prefs.model = self.model.text().strip()
        self.prefs.sync()
        return reload
