"""Write the README screenshot of the main window: ``python -m tests.ui.make_screenshot OUT.png [IMAGE]``.

Uses the trained bundle (models/chromodesk-resnet18.json) when it exists, exactly like
``chromodesk-gui --screenshot``; otherwise injects the test suite's fake classifier
(probabilities from the VOC labels) and says so on stderr. The image and its VOC file
are copied to a temporary folder so that no session file is written beside shared data.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases" / "images" / "103082.jpg"
MODEL = ROOT / "models" / "chromodesk-resnet18.json"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("screenshot.png")
    image = Path(argv[1]) if len(argv) > 1 else IMAGE
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="chromodesk-shot-"))
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    (work / "images").mkdir()
    (work / "annotations").mkdir()
    shutil.copy(image, work / "images" / image.name)
    xml = image.parent.parent / "annotations" / f"{image.stem}.xml"
    if xml.is_file():
        shutil.copy(xml, work / "annotations" / xml.name)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from chromodesk.ui.app import screenshot
    from chromodesk.ui.main_window import MainWindow
    from chromodesk.ui.settings import Preferences

    app = QApplication.instance() or QApplication([sys.argv[0]])
    prefs = Preferences(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    prefs.reviewer = "reviewer"
    factory = None
    if MODEL.is_file():
        prefs.model = str(MODEL)
    else:
        from chromodesk.core.imaging import load_gray
        from tests.ui.fakes import FakeClassifier

        gray = load_gray(image).gray
        fake = FakeClassifier.from_voc(work / "annotations" / xml.name, (gray.shape[1], gray.shape[0]))
        factory = lambda: fake  # noqa: E731
        print(f"no model bundle at {MODEL}: using the test suite's fake classifier", file=sys.stderr)
    window = MainWindow(prefs, classifier_factory=factory, headless=True)
    try:
        path = screenshot(window, work / "images" / image.name, out, timeout=600)
    finally:
        window.close()
        app.processEvents()
        shutil.rmtree(work, ignore_errors=True)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
