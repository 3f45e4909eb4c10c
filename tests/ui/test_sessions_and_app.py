"""Autosave and restore, folders as cases, no-model start-up, the entry point, training, the log."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PySide6.QtWidgets import QMessageBox

from chromodesk.core.session import default_session_path, load_session

from .conftest import open_and_classify


def test_every_change_is_saved_and_restored_on_reopen(qtbot, make_window, fake, cell_files):
    image = cell_files[0]
    window = make_window(fake)
    ws = window.workspace
    open_and_classify(qtbot, window, image)
    doc = ws.cell.doc
    rid = next(iter(doc.records))
    ws.set_label(rid, "X")
    qtbot.wait(50)  # one event-loop turn: the autosave has run, the window is still open ("crash" now)
    path = default_session_path(image)
    saved = load_session(path)
    assert saved.get(rid).final == "X" and saved.get(rid).confirmed_by == "tester"
    assert all(r.probabilities is not None for r in saved)

    # a second window (as after a crash: the first one was never closed) restores the work
    other = make_window(fake)
    calls_before = len(fake.calls)
    with qtbot.waitSignal(other.workspace.cellChanged, timeout=20000):
        other.workspace.open_image(image)
    qtbot.waitUntil(other.workspace.is_settled, timeout=20000)
    restored = other.workspace.cell.doc
    assert other.workspace.cell.source == "session"
    assert restored.get(rid).final == "X"
    assert len(fake.calls) == calls_before  # predictions came back with the session: no reclassification
    assert "Restored" in other.statusBar().currentMessage()
    other.workspace.load_model()  # a model arriving later must not overwrite what the user is reading
    qtbot.waitUntil(lambda: not other.workspace.model_loading, timeout=20000)
    assert "Restored" in other.statusBar().currentMessage()


def test_session_for_another_image_is_not_applied(qtbot, window, cell_files):
    image = cell_files[0]
    path = default_session_path(image)
    path.write_text(json.dumps({"format": "chromodesk-session", "schema_version": 1,
                                "image": {"path": str(image), "sha256": "0" * 64, "width": 1134, "height": 759},
                                "records": []}))
    open_and_classify(qtbot, window, image)
    assert window.workspace.cell.source == "annotations" and len(window.workspace.cell.doc) == 46
    assert "not used" in window.statusBar().currentMessage()


def test_folder_opens_as_a_case(qtbot, window, cell_files):
    image, xml = cell_files
    shutil.copy(image, image.with_name("103082b.jpg"))
    shutil.copy(xml, xml.with_name("103082b.xml"))
    ws = window.workspace
    with qtbot.waitSignal(ws.classified, timeout=30000):
        ws.open_folder(image.parents[1])
    qtbot.waitUntil(ws.is_settled, timeout=30000)
    assert window.case_dock.isVisible() and window.case_list.count() == 2
    assert ws.cell.image_path.name == "103082.jpg"
    assert "(1/2)" in window.windowTitle()
    ws.accept_all()
    qtbot.waitUntil(lambda: "reviewed" in window.case_list.item(0).text(), timeout=5000)
    with qtbot.waitSignal(ws.classified, timeout=30000):
        ws.step_cell(+1)
    assert ws.cell.image_path.name == "103082b.jpg" and "(2/2)" in window.windowTitle()
    assert "not started" in window.case_list.item(1).text() or "0/46" in window.case_list.item(1).text()
    with qtbot.waitSignal(ws.cellChanged, timeout=30000):
        ws.step_cell(-1)
    assert ws.cell.source == "session" and not ws.cell.doc.unreviewed()


def test_start_without_a_model_bundle(qtbot, prefs, cell_files, tmp_path):
    from chromodesk.ui.main_window import MainWindow

    prefs.model = str(tmp_path / "nowhere" / "model.json")
    window = MainWindow(prefs)  # the real loader, in the background
    qtbot.addWidget(window)
    window.show()
    assert window.isVisible()  # the window is up before the model
    qtbot.waitUntil(lambda: not window.workspace.model_loading, timeout=120000)
    assert window.workspace.classifier is None
    assert "No model bundle" in window.statusBar().currentMessage()
    assert window.model_label.text() == "No model"
    ws = window.workspace
    with qtbot.waitSignal(ws.cellChanged, timeout=20000):
        ws.open_image(cell_files[0])
    qtbot.waitUntil(ws.is_settled, timeout=20000)
    assert len(ws.cell.doc) == 46 and all(r.label == r.file_label for r in ws.cell.doc)
    window.close()


def test_screenshot_with_injected_classifier(qtbot, make_window, fake, cell_files, tmp_path):
    from chromodesk.ui.app import screenshot

    window = make_window(fake, headless=True)
    out = screenshot(window, cell_files[0], tmp_path / "shot.png", timeout=60)
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 700
    assert window.workspace.cell.selected is not None


def test_cli_screenshot_fails_with_one_line(qtbot, tmp_path, capsys):
    from chromodesk.ui.app import main

    code = main(["--screenshot", str(tmp_path / "out.png"), str(tmp_path / "missing.jpg"),
                 "--model", str(tmp_path / "none.json"), "--timeout", "120"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "missing.jpg" in err[0]
    assert not (tmp_path / "out.png").exists()


def test_show_error_writes_the_log(qtbot, tmp_path, monkeypatch):
    from chromodesk.ui.errors import setup_logging, show_error

    monkeypatch.setattr(QMessageBox, "exec", lambda box: 0)
    path = setup_logging(tmp_path / "logs")
    show_error(None, "Something broke", "Traceback: details here")
    for handler in __import__("logging").getLogger("chromodesk").handlers:
        handler.flush()
    text = path.read_text()
    assert "Something broke" in text and "details here" in text


def test_train_dialog_fine_tunes_compares_and_offers_the_model(qtbot, window, tmp_path, monkeypatch):
    from chromodesk.ui.train_dialog import TrainDialog

    # a stand-in interpreter: ``fit`` prints epochs and writes OUT/model.json + split.json like
    # ``training.cli fit``; ``evaluate`` prints an accuracy that depends on the model
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/bin/sh\n"
        "echo \"args: $*\"\n"
        "out=''; model=''; prev=''\n"
        "for a in \"$@\"; do [ \"$prev\" = '--out' ] && out=\"$a\"; [ \"$prev\" = '--model' ] && model=\"$a\"; prev=\"$a\"; done\n"
        "case \"$*\" in *' fit '*) mkdir -p \"$out\" && echo '{}' > \"$out/model.json\" && echo '{}' > \"$out/split.json\";"
        " echo 'epoch 1: train 0.8000 loss 0.700 | val 0.9100 | 100 img/s | lr 1e-3';"
        " echo 'epoch 2: train 0.8500 loss 0.600 | val 0.9300 | 100 img/s | lr 1e-4';;\n"
        " *' evaluate '*) case \"$model\" in *run/model.json) echo 'accuracy: 0.9700';; *) echo 'accuracy: 0.9500';; esac;"
        " echo 'n_chromosomes: 460, n_cells: 10, seconds: 1.0';;\n"
        "esac\n")
    fake_python.chmod(0o755)
    current = str(tmp_path / "current.json")
    dialog = TrainDialog([], window, python=str(fake_python), current_model=current)
    qtbot.addWidget(dialog)
    assert dialog.fine_tune.isChecked() and not dialog.include_reviewed.isEnabled()
    assert "0 fully reviewed" in dialog.include_reviewed.text()
    dialog.data.addItem(str(tmp_path / "data"))
    dialog.out.setText(str(tmp_path / "run"))
    with qtbot.waitSignal(dialog.modelReady, timeout=20000) as ready:
        dialog.start()
    assert ready.args[0] == str(tmp_path / "run" / "model.json")
    log = dialog.log.toPlainText()
    assert "-m training.cli fit --data" in log and f"--init {current}" in log and "--time-budget 60" in log
    assert "best 93.0%" in dialog.val_label.text()
    assert dialog.comparison == "on 460 chromosomes in 10 held-out cells: current model 95.0%, new model 97.0%"

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Yes)
    window._offer_model(ready.args[0], dialog.comparison)
    assert asked and "new model 97.0%" in asked[0][2] and window.prefs.model == ready.args[0]
    qtbot.waitUntil(lambda: not window.workspace.model_loading, timeout=20000)


def test_train_dialog_stop_ends_the_run_after_its_epoch_without_freezing(qtbot, window, tmp_path):
    import time as _time

    from chromodesk.ui.train_dialog import TrainDialog

    slow = tmp_path / "python"
    slow.write_text("#!/bin/sh\ntrap 'echo stopping after this epoch; sleep 1; exit 0' TERM\n"
                    "while true; do sleep 0.1; done\n")
    slow.chmod(0o755)
    dialog = TrainDialog([], window, python=str(slow))
    qtbot.addWidget(dialog)
    dialog.data.addItem(str(tmp_path / "data"))
    dialog.out.setText(str(tmp_path / "run"))
    dialog.start()
    qtbot.waitUntil(lambda: dialog.process.state() == dialog.process.ProcessState.Running, timeout=5000)
    qtbot.wait(300)
    t0 = _time.monotonic()
    dialog.stop_button.click()
    assert _time.monotonic() - t0 < 0.5  # the window does not wait for the run
    assert "best model so far is kept" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=10000)
    assert "stopping after this epoch" in dialog.log.toPlainText()


def test_train_dialog_includes_reviewed_cells(qtbot, window, cell_files, tmp_path):
    from chromodesk.ui.train_dialog import write_reviewed_cells

    open_and_classify(qtbot, window, cell_files[0])
    assert write_reviewed_cells([cell_files[0]], tmp_path / "r1") == 0  # not reviewed yet
    window.workspace.accept_all()
    qtbot.wait(50)
    assert write_reviewed_cells([cell_files[0]], tmp_path / "r2") == 1
    assert (tmp_path / "r2" / "annotations" / "103082.xml").is_file()
    assert (tmp_path / "r2" / "images" / "103082.jpg").exists()


def test_preferences_dialog_stores_values(qtbot, window, prefs):
    dialog = window.preferences_dialog()
    dialog.reviewer.setText("Dr. Who")
    dialog.device.setCurrentText("cpu")
    assert dialog.apply() is True  # device changed: the model is reloaded
    assert prefs.reviewer == "Dr. Who" and prefs.device == "cpu"
    dialog.reject()


@pytest.mark.parametrize("module", ["chromodesk.ui.main_window", "chromodesk.ui.app"])
def test_window_code_does_not_import_torch(module):
    """The window must appear at once: torch is imported by the model-loading worker only."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


_DRIVE_MAIN = """
import json, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from chromodesk.ui.app import main
from chromodesk.ui.main_window import MainWindow
seen = {}
def check_and_quit():
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    ws = windows[0].workspace if windows else None
    if ws is not None and ws.cell is not None and not ws.model_loading:
        seen.update(image=ws.cell.image_path.name, boxes=len(ws.cell.doc), status=windows[0].model_label.text())
        windows[0].close()
        QApplication.instance().quit()
    else:
        QTimer.singleShot(50, check_and_quit)
app = QApplication.instance() or QApplication(sys.argv[:1])
QTimer.singleShot(50, check_and_quit)
rc = main(sys.argv[1:])
print(json.dumps(seen))
sys.exit(rc)
"""


def test_main_opens_the_window_and_the_image(cell_files, tmp_path):
    """The real entry point, in its own process as a user starts it (main() installs an excepthook,
    logging and quits the application: nothing of that may leak into the other tests)."""
    import os

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CHROMODESK_LOG_DIR=str(tmp_path / "log"),
               XDG_DATA_HOME=str(tmp_path / "xdg-data"), XDG_CONFIG_HOME=str(tmp_path / "xdg-config"))
    run = subprocess.run([sys.executable, "-c", _DRIVE_MAIN, str(cell_files[0]), "--model", str(tmp_path / "none.json"),
                          "--device", "cpu"], capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"image": "103082.jpg", "boxes": 46, "status": "No model"}
    assert (tmp_path / "log" / "chromodesk.log").is_file()


