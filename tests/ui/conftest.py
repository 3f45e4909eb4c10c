"""UI test set-up: isolated settings, sessions and logs; a fake classifier; no thread left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt, QThreadPool
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from chromodesk.ui.settings import Preferences

from .fakes import FakeClassifier

IMAGE_SIZE = (1134, 759)  # 103082.jpg


@pytest.fixture(autouse=True, scope="session")
def working_qt_binding(qapp):
    """A broken binding (PySide6 6.12.0 on Python 3.11) aborts the interpreter mid-run: fail clearly instead."""
    from chromodesk.ui.compat import binding_problem

    problem = binding_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Nothing a test does reaches the user's settings, sessions or logs; no worker outlives it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("CHROMODESK_LOG_DIR", str(tmp_path / "log"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    yield
    import logging
    from logging.handlers import RotatingFileHandler

    logger = logging.getLogger("chromodesk")
    for handler in [h for h in logger.handlers if isinstance(h, RotatingFileHandler)]:
        logger.removeHandler(handler)
        handler.close()
    pool = QThreadPool.globalInstance()
    assert pool.waitForDone(60000), "a worker thread was still running at the end of the test"
    assert pool.activeThreadCount() == 0


@pytest.fixture
def cell_files(tmp_path, real_image) -> tuple[Path, Path]:
    """The shared image and its VOC, copied (sessions are written beside the image)."""
    image, xml = real_image
    (tmp_path / "case" / "images").mkdir(parents=True)
    (tmp_path / "case" / "annotations").mkdir()
    shutil.copy(image, tmp_path / "case" / "images" / image.name)
    shutil.copy(xml, tmp_path / "case" / "annotations" / xml.name)
    return tmp_path / "case" / "images" / image.name, tmp_path / "case" / "annotations" / xml.name


@pytest.fixture
def prefs(tmp_path) -> Preferences:
    p = Preferences(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    p.reviewer = "tester"
    return p


@pytest.fixture
def fake(cell_files) -> FakeClassifier:
    return FakeClassifier.from_voc(cell_files[1], IMAGE_SIZE)


@pytest.fixture
def make_window(qtbot, prefs):
    from chromodesk.ui.main_window import MainWindow

    windows = []

    def make(classifier, **kwargs):
        w = MainWindow(kwargs.pop("prefs", prefs), classifier_factory=lambda: classifier, **kwargs)
        qtbot.addWidget(w)
        w.resize(1400, 900)
        w.show()
        qtbot.waitUntil(lambda: not w.workspace.model_loading, timeout=20000)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()


@pytest.fixture
def window(make_window, fake):
    return make_window(fake)


def open_and_classify(qtbot, window, image: Path) -> None:
    ws = window.workspace
    with qtbot.waitSignal(ws.classified, timeout=30000):
        ws.open_image(image)
    qtbot.waitUntil(lambda: ws.is_settled() and not window.image_view.is_building(), timeout=30000)


def send_mouse(widget, kind, pos: QPointF, button, buttons) -> None:
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos.toPoint())), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def mouse_drag(qtbot, widget, start: QPointF, end: QPointF, steps: int = 10) -> None:
    """Press, move in steps (pyqtgraph rate-limits moves), release: a real drag for the scene."""
    left = Qt.MouseButton.LeftButton
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, left, left)
    for i in range(1, steps + 1):
        qtbot.wait(25)
        p = start + (end - start) * (i / steps)
        send_mouse(widget, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, left)
    qtbot.wait(25)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, left, Qt.MouseButton.NoButton)


def mouse_click(qtbot, widget, pos: QPointF) -> None:
    left = Qt.MouseButton.LeftButton
    send_mouse(widget, QEvent.Type.MouseButtonPress, pos, left, left)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, pos, left, Qt.MouseButton.NoButton)
    qtbot.wait(10)
