"""Tools ▸ Train model…: runs ``python -m training.cli fit`` as a QProcess and shows its progress.

Training never runs inside the GUI process: a subprocess keeps the window responsive
and a crash in training cannot take the reviewer's work with it. The cells of the open
case that are fully reviewed can be included: their final labels are written as VOC
next to a link (or copy) of the image, in ``OUT/reviewed-cells``.

By default the current model is fine-tuned (``--init``), within a time budget (cosine
schedule over it); Stop ends the run after its current epoch with the best checkpoint
kept. Afterwards the current and the new model are evaluated on the run's held-out
(test) cells, and the app offers the new model with both figures.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import re
import time

from PySide6.QtCore import QProcess, QProcessEnvironment, QTimer, Signal
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
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .workspace import session_path_for


EPOCH_LINE = re.compile(r"^epoch (\d+): .*\| val ([0-9.]+)")
ACCURACY_LINE = re.compile(r"^accuracy: ([0-9.]+)")
N_LINE = re.compile(r"^n_chromosomes: (\d+), n_cells: (\d+)")


def _reviewed_docs(images: list[Path]):
    from chromodesk.core.session import load_session

    for image in images:
        session = session_path_for(image)
        if session is None or not session.is_file():
            continue
        try:
            doc = load_session(session)
        except Exception:  # noqa: BLE001 - skip a damaged session, train on the rest
            continue
        if len(doc) and all(r.confirmed or r.excluded for r in doc):
            yield image, doc


def count_reviewed_cells(images: list[Path]) -> int:
    return sum(1 for _ in _reviewed_docs(images))


def write_reviewed_cells(images: list[Path], out: Path) -> int:
    """VOC files of the fully confirmed cells among ``images`` into ``out/{images,annotations}``."""
    from chromodesk.core.voc import write_voc

    n = 0
    for image, doc in _reviewed_docs(images):
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
    modelReady = Signal(str)  # path of the new bundle's JSON (``comparison`` says how it did)

    def __init__(self, case_images: list[Path] | None = None, parent: QWidget | None = None,
                 python: str | None = None, current_model: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Train model")
        self.resize(760, 560)
        self.case_images = list(case_images or [])
        self.python = python or sys.executable
        self.process: QProcess | None = None
        self.current_model = current_model
        self.comparison = ""
        self._stage = "idle"  # idle | fit | eval-current | eval-new
        self._stopping = False
        self._started = 0.0
        self._accuracy: dict[str, float] = {}
        self._held_out = ""

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

        reviewed = count_reviewed_cells(self.case_images)  # honest: the cells that will really be used
        self.include_reviewed = QCheckBox(f"Include the {reviewed} fully reviewed cell(s) of the open case "
                                          f"({len(self.case_images)} cells in the case)")
        self.include_reviewed.setEnabled(reviewed > 0)
        self.include_reviewed.setChecked(reviewed > 0)
        self.fine_tune = QCheckBox("Fine-tune the current model (untick to train a new one from random weights)")
        self.fine_tune.setEnabled(bool(current_model))
        self.fine_tune.setChecked(bool(current_model))
        if current_model:
            self.fine_tune.setToolTip(current_model)
        self.out = QLineEdit(str(Path.home() / "chromodesk-runs" / "run1"))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(100)
        self.minutes = QSpinBox()
        self.minutes.setRange(0, 24 * 60)
        self.minutes.setValue(60)
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("The run stops after this long and keeps its best epoch; the learning rate "
                                "anneals over it")
        form = QFormLayout()
        form.addRow("Training data (VOC folders)", data_row)
        form.addRow("", self.include_reviewed)
        form.addRow("", self.fine_tune)
        form.addRow("Output folder", self.out)
        form.addRow("At most epochs", self.epochs)
        form.addRow("Time budget", self.minutes)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.val_label = QLabel("")
        self._tick = QTimer(self)
        self._tick.timeout.connect(self._update_progress)

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
        layout.addWidget(self.progress)
        layout.addWidget(self.val_label)
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
                "--context", "--optimizer", "adamw", "--batch-size", "64", "--label-smoothing", "0.05",
                "--no-test-curve", "--patience", "100"]
        if self.fine_tune.isChecked() and self.current_model:
            args += ["--init", self.current_model, "--lr", "5e-4"]
        else:
            args += ["--lr", "1.5e-3"]
        if self.minutes.value():
            args += ["--time-budget", str(self.minutes.value()), "--schedule", "cosine-time"]
        self._data = data
        return args

    def append(self, text: str) -> None:
        self.log.appendPlainText(text.rstrip("\n"))

    def start(self) -> None:
        try:
            args = self.arguments()
        except Exception as exc:  # noqa: BLE001 - shown in the dialog, nothing started
            self.status.setText(f"<span style='color:#c00000'>{exc}</span>")
            return
        self._accuracy, self.comparison, self._stopping = {}, "", False
        self._started = time.monotonic()
        self._run("fit", args)
        self.status.setText("Training…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stop_button.setText("Stop")
        self._tick.start(1000)

    def _run(self, stage: str, args: list[str]) -> None:
        self._stage = stage
        self.process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        self.process.setProcessEnvironment(env)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self.append("$ " + " ".join([self.python, *args]))
        self.process.start(self.python, args)

    def _read(self) -> None:
        raw = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        # tqdm redraws one line with \r: show the last state of each line
        for line in raw.replace("\r\n", "\n").split("\n"):
            if not line.strip():
                continue
            line = line.split("\r")[-1]
            self.append(line)
            m = EPOCH_LINE.match(line)
            if m and self._stage == "fit":
                self._epoch, val = int(m.group(1)), float(m.group(2))
                self._best_val = max(getattr(self, "_best_val", 0.0), val)
                self.val_label.setText(f"Epoch {self._epoch}: validation accuracy {val:.1%} (best {self._best_val:.1%})")
            m = ACCURACY_LINE.match(line)
            if m and self._stage.startswith("eval"):
                self._accuracy[self._stage] = float(m.group(1))
            m = N_LINE.match(line)
            if m and self._stage.startswith("eval"):
                self._held_out = f"{m.group(1)} chromosomes in {m.group(2)} held-out cells"

    def _update_progress(self) -> None:
        if self._stage != "fit":
            return
        elapsed = time.monotonic() - self._started
        budget = self.minutes.value() * 60
        if budget:
            frac = min(1.0, elapsed / budget)
            left = max(0.0, budget - elapsed)
            self.progress.setFormat(f"%p%  ·  about {left / 60:.0f} min left")
        else:
            frac = min(1.0, getattr(self, "_epoch", 0) / max(1, self.epochs.value()))
            self.progress.setFormat(f"epoch {getattr(self, '_epoch', 0)} of {self.epochs.value()}")
        self.progress.setValue(int(frac * 1000))

    def _error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.status.setText(f"<span style='color:#c00000'>Could not start {self.python}</span>")
            self._reset_buttons()

    def _reset_buttons(self) -> None:
        self._tick.stop()
        self._stage = "idle"
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stop")

    def _finished(self, code: int, status) -> None:
        out = Path(self.out.text()).expanduser()
        bundle = out / "model.json"
        ok = code == 0 and status == QProcess.ExitStatus.NormalExit
        if self._stage == "fit":
            self.progress.setValue(1000)
            if not (ok and bundle.is_file()):
                self.status.setText(f"<span style='color:#c00000'>Training stopped (exit code {code}); see the log</span>")
                self._reset_buttons()
                return
            # before / after on the run's own held-out cells
            self.status.setText("Comparing the current and the new model on the held-out cells…")
            self.stop_button.setEnabled(False)
            if self.current_model:
                self._run("eval-current", self._evaluate_args(self.current_model, out))
            else:
                self._run("eval-new", self._evaluate_args(str(bundle), out))
            return
        if self._stage == "eval-current":
            self._run("eval-new", self._evaluate_args(str(bundle), out))
            return
        # eval-new finished (or failed): offer the model with what is known
        new, cur = self._accuracy.get("eval-new"), self._accuracy.get("eval-current")
        if new is None:
            self.comparison = "it could not be evaluated on held-out cells (see the log)"
        else:
            where = self._held_out or "held-out cells"
            self.comparison = (f"on {where}: current model {cur:.1%}, new model {new:.1%}" if cur is not None
                               else f"on {where}: new model {new:.1%}")
        self.status.setText(f"<span style='color:#1a7f37'>Done: {bundle}</span><br>{self.comparison}")
        self._reset_buttons()
        self.modelReady.emit(str(bundle))

    def _evaluate_args(self, model: str, out: Path) -> list[str]:
        return ["-m", "training.cli", "evaluate", "--model", model, "--data", *self._data, "--split", "test",
                "--split-file", str(out / "split.json"), "--quiet"]

    def stop(self) -> None:
        """First Stop: the run ends after its current epoch and keeps its best one (SIGTERM is
        handled by the training loop). A second Stop ends it at once."""
        if self.process is None or self.process.state() == QProcess.ProcessState.NotRunning:
            return
        if not self._stopping:
            self._stopping = True
            self.process.terminate()
            self.status.setText("Stopping after this epoch; the best model so far is kept (Stop again to abort)")
            self.stop_button.setText("Abort")
        else:
            self.process.kill()

    def closeEvent(self, event) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.kill()  # closing the dialog abandons the run
            self.process.waitForFinished(2000)
        super().closeEvent(event)
