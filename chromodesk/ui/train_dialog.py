"""Tools ▸ Train model…: runs ``python -m training.cli fit`` as a QProcess and shows its log.

Training never runs inside the GUI process: a subprocess keeps the window responsive
and a crash in training cannot take the reviewer's work with it. The cells of the open
case that are fully reviewed can be included: their final labels are written as VOC
next to a link (or copy) of the image, in ``OUT/reviewed-cells``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .workspace import session_path_for


def write_reviewed_cells(images: list[Path], out: Path) -> int:
    """VOC files of the fully confirmed cells among ``images`` into ``out/{images,annotations}``."""
    from chromodesk.core.session import load_session
    from chromodesk.core.voc import write_voc

    n = 0
    for image in images:
        session = session_path_for(image)
        if session is None or not session.is_file():
            continue
        try:
            doc = load_session(session)
        except Exception:  # noqa: BLE001 - skip a damaged session, train on the rest
            continue
        if len(doc) == 0 or any(not r.confirmed for r in doc):
            continue
        (out / "images").mkdir(parents=True, exist_ok=True)
        target = out / "images" / image.name
        if not target.exists():
            try:
                os.symlink(image.resolve(), target)
            except OSError:
                shutil.copy2(image, target)
        write_voc(doc, out / "annotations" / f"{image.stem}.xml")
        n += 1
    return n


class TrainDialog(QDialog):
    modelReady = Signal(str)  # path of the new bundle's JSON

    def __init__(self, case_images: list[Path] | None = None, parent: QWidget | None = None,
                 python: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Train model")
        self.resize(760, 560)
        self.case_images = list(case_images or [])
        self.python = python or sys.executable
        self.process: QProcess | None = None

        self.data = QListWidget()
        add = QPushButton("Add folder…")
        add.clicked.connect(self._add_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda: [self.data.takeItem(self.data.row(i)) for i in self.data.selectedItems()])
        data_buttons = QVBoxLayout()
        data_buttons.addWidget(add)
        data_buttons.addWidget(remove)
        data_buttons.addStretch(1)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data, 1)
        data_row.addLayout(data_buttons)

        self.include_reviewed = QCheckBox(f"Include the fully reviewed cells of the open case "
                                          f"({len(self.case_images)} cells in the case)")
        self.include_reviewed.setEnabled(bool(self.case_images))
        self.include_reviewed.setChecked(bool(self.case_images))
        self.out = QLineEdit(str(Path.home() / "chromodesk-runs" / "run1"))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(30)
        self.minutes = QSpinBox()
        self.minutes.setRange(0, 24 * 60)
        self.minutes.setValue(0)
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setSuffix(" min")
        form = QFormLayout()
        form.addRow("Training data (VOC folders)", data_row)
        form.addRow("", self.include_reviewed)
        form.addRow("Output folder", self.out)
        form.addRow("Epochs", self.epochs)
        form.addRow("Time budget", self.minutes)

        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.status = QLabel("")
        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Log"))
        layout.addWidget(self.log, 1)
        layout.addLayout(buttons)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Training data folder")
        if folder:
            self.data.addItem(folder)

    def arguments(self) -> list[str]:
        """The training command line (after the Python executable)."""
        out = Path(self.out.text()).expanduser()
        data = [self.data.item(i).text() for i in range(self.data.count())]
        if self.include_reviewed.isChecked() and self.case_images:
            reviewed = out / "reviewed-cells"
            n = write_reviewed_cells(self.case_images, reviewed)
            self.append(f"{n} fully reviewed cell(s) of the case written to {reviewed}")
            if n:
                data.append(str(reviewed))
        if not data:
            raise ValueError("add at least one training data folder")
        # --context: the model the app gets back has its cell-context stage, like the shipped one
        args = ["-m", "training.cli", "fit", "--data", *data, "--out", str(out), "--epochs", str(self.epochs.value()),
                "--context"]
        if self.minutes.value():
            args += ["--time-budget", str(self.minutes.value())]
        return args

    def append(self, text: str) -> None:
        self.log.appendPlainText(text.rstrip("\n"))

    def start(self) -> None:
        try:
            args = self.arguments()
        except Exception as exc:  # noqa: BLE001 - shown in the dialog, nothing started
            self.status.setText(f"<span style='color:#c00000'>{exc}</span>")
            return
        self.process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        self.process.setProcessEnvironment(env)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self.append("$ " + " ".join([self.python, *args]))
        self.status.setText("Training…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.process.start(self.python, args)

    def _read(self) -> None:
        raw = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        # tqdm redraws one line with \r: show the last state of each line
        for line in raw.replace("\r\n", "\n").split("\n"):
            if line.strip():
                self.append(line.split("\r")[-1])

    def _error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.status.setText(f"<span style='color:#c00000'>Could not start {self.python}</span>")
            self.start_button.setEnabled(True)
            self.stop_button.setEnabled(False)

    def _finished(self, code: int, status) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        bundle = Path(self.out.text()).expanduser() / "model.json"
        if code == 0 and status == QProcess.ExitStatus.NormalExit and bundle.is_file():
            self.status.setText(f"<span style='color:#1a7f37'>Done: {bundle}</span>")
            self.modelReady.emit(str(bundle))
        else:
            self.status.setText(f"<span style='color:#c00000'>Training stopped (exit code {code}); see the log</span>")

    def stop(self) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.terminate()
            if not self.process.waitForFinished(5000):
                self.process.kill()
                self.process.waitForFinished(2000)

    def closeEvent(self, event) -> None:
        self.stop()
        super().closeEvent(event)
