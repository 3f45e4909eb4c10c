"""Measure the desktop app: start-up time to first paint, and the largest event-loop stall
while a 46-chromosome cell is opened and classified (a 5 ms QTimer records the longest gap).

    python scripts/measure_gui.py [--image PATH] [--model BUNDLE] [--device auto|cpu|cuda]

Prints one JSON object. Uses the real model bundle (models/chromodesk-resnet18.json or
--model) when it exists; otherwise it says so and measures with a stand-in classifier
(all preprocessing, assignment, karyogram rendering and view updates are real; only
the network is replaced), which is reported as ``"classifier": "stand-in"``.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before Qt and the app are imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "datasets" / "tseng2023-gband-metaphases" / "images" / "103082.jpg"
DEFAULT_MODEL = ROOT / "models" / "chromodesk-resnet18.json"


class StandIn:
    """Network replaced by a size-rank guess; same interface as Classifier."""

    device = "cpu"
    model_id = "stand-in"

    def __init__(self):
        from chromodesk.core.preprocess import PreprocessConfig

        self.preprocess = PreprocessConfig()

    def predict(self, crops):
        import numpy as np

        n = len(crops.images)
        out = np.full((n, 24), 0.01)
        for i in range(n):
            out[i, int(round((1 - float(crops.features[i, 4])) * 21))] = 0.8
        return out / out.sum(1, keepdims=True)


class StallMeter:
    def __init__(self, interval_ms: int = 5):
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self.cpu: list[float] = []
        self.last = self.last_cpu = None

    def _tick(self):
        now, cpu = time.perf_counter(), time.thread_time()
        if self.last is not None:
            self.gaps.append((now - self.last) * 1000)
            self.cpu.append((cpu - self.last_cpu) * 1000)
        self.last, self.last_cpu = now, cpu

    def start(self):
        self.gaps, self.cpu = [], []
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        self.timer.start()

    def stop(self) -> dict:
        """Wall-clock gaps between ticks, and the GUI thread's own CPU time inside each gap.

        On a busy machine the wall gap includes time the OS gave to other processes; the
        CPU figure is the work our GUI thread did without returning to the event loop,
        i.e. the stall an otherwise idle machine would show.
        """
        self.timer.stop()
        gaps = sorted(self.gaps) or [0.0]
        return {"max_gap_ms": round(gaps[-1], 1), "p99_gap_ms": round(gaps[int(0.99 * (len(gaps) - 1))], 1),
                "median_gap_ms": round(gaps[len(gaps) // 2], 1),
                "max_gui_thread_cpu_in_a_gap_ms": round(max(self.cpu or [0.0]), 1), "ticks": len(self.gaps)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--device", default="auto")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="chromodesk-measure-"))
    os.environ["XDG_DATA_HOME"] = str(work / "data")  # sessions of this run go to the temporary folder

    from PySide6.QtCore import QEvent, QObject, QSettings
    from PySide6.QtWidgets import QApplication

    from chromodesk.ui.app import wait_until
    from chromodesk.ui.main_window import MainWindow
    from chromodesk.ui.settings import Preferences

    t_imported = time.perf_counter()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from chromodesk.ui.compat import binding_problem

    problem = binding_problem()
    if problem:
        print(json.dumps({"error": problem}))
        return 3

    class FirstPaint(QObject):
        at = None

        def eventFilter(self, obj, event):
            if self.at is None and event.type() == QEvent.Type.Paint:
                self.at = time.perf_counter()
            return False

    have_model = Path(args.model).is_file()
    prefs = Preferences(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat),
                        model=args.model if have_model else None, device=args.device)
    stand_in = None if have_model else StandIn()
    window = MainWindow(prefs, classifier_factory=(lambda: stand_in) if stand_in else None, headless=True)
    painted = FirstPaint()
    window.installEventFilter(painted)
    window.resize(1600, 1000)
    window.show()
    wait_until(lambda: painted.at is not None, 30)
    t_paint = painted.at or time.perf_counter()
    ws = window.workspace
    wait_until(lambda: not ws.model_loading, args.timeout)
    t_model = time.perf_counter()
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()}",
        "startup_to_first_paint_s": round(t_paint - T0, 3),
        "imports_s": round(t_imported - T0, 3),
        "model_loaded_after_s": round(t_model - T0, 3),
        "classifier": "model bundle" if have_model else "stand-in",
        "model": args.model if have_model else None,
    }
    if not have_model:
        result["note"] = f"no model bundle at {args.model}: stall measured with a stand-in for the network"
    if ws.classifier is None:
        result["error"] = window.model_label.toolTip() or "model not loaded"
        print(json.dumps(result, indent=1))
        return 1
    result["device"] = str(ws.classifier.device)

    src = Path(args.image)
    (work / "images").mkdir()
    shutil.copy(src, work / "images" / src.name)
    for xml in (src.with_suffix(".xml"), src.parent.parent / "annotations" / f"{src.stem}.xml"):
        if xml.is_file():
            (work / "annotations").mkdir(exist_ok=True)
            shutil.copy(xml, work / "annotations" / xml.name)
    meter = StallMeter()
    runs = []
    for label, action in (("open + classify", lambda: ws.open_image(work / "images" / src.name)),
                          ("classify again", lambda: ws.classify(force=True))):
        meter.start()
        t = time.perf_counter()
        action()
        wait_until(lambda: False, 0.05)
        ok = wait_until(lambda: ws.is_settled() and not window.image_view.is_building() and not window.errors,
                        args.timeout)
        run = {"what": label, "seconds": round(time.perf_counter() - t, 2), **meter.stop(), "ok": ok}
        runs.append(run)
    result["chromosomes"] = len(ws.cell.doc) if ws.cell else 0
    result["runs"] = runs
    result["largest_stall_ms"] = max(r["max_gap_ms"] for r in runs)
    result["largest_gui_thread_cpu_ms"] = max(r["max_gui_thread_cpu_in_a_gap_ms"] for r in runs)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["nice"] = os.nice(0)
    if window.errors:
        result["errors"] = window.errors
    window.close()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0 if all(r["ok"] for r in runs) and not window.errors else 1


if __name__ == "__main__":
    sys.exit(main())
