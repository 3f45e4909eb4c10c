"""``chromodesk-gui [IMAGE|FOLDER] [--screenshot OUT.png] [--model BUNDLE] [--device auto|cpu|cuda]``.

``--screenshot`` is the headless smoke mode: open the image, classify it, wait for the
workers, render the main window to OUT.png and exit 0; on any failure print one line
and exit non-zero. It needs no display (``QT_QPA_PLATFORM=offscreen`` is set for it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="chromodesk-gui", description="ChromoDesk: review and correct a karyotype")
    p.add_argument("path", nargs="?", help="a metaphase image, or a folder of images to open as a case")
    p.add_argument("--screenshot", metavar="OUT.png", help="headless: open PATH, classify, save the window, exit")
    p.add_argument("--model", help="model bundle (.json) for this run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="where the classifier runs")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds the screenshot mode waits (default 300)")
    return p.parse_args(argv)


def wait_until(condition, timeout: float, step_ms: int = 20) -> bool:
    """Run the event loop until ``condition()`` is true or ``timeout`` seconds pass."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    result = {"ok": False}

    def check():
        if condition():
            result["ok"] = True
            loop.quit()
        elif time.monotonic() > deadline:
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(step_ms)
    QTimer.singleShot(0, check)
    loop.exec()
    timer.stop()
    return result["ok"]


def screenshot(window, image_path: str | Path, out: str | Path, timeout: float = 300.0,
               require_model: bool = True, select: bool = True) -> Path:
    """Open ``image_path`` in ``window``, wait until classified and drawn, save the window as PNG.

    Raises RuntimeError with a one-line message on failure.
    """
    from PySide6.QtCore import Qt

    ws = window.workspace
    window.resize(1600, 1000)
    window.show()
    window.resizeDocks([window.table_dock, window.karyogram_dock], [270, 620], Qt.Orientation.Horizontal)
    ws.open_path(image_path)
    ok = wait_until(lambda: bool(window.errors) or (ws.is_settled() and not window.image_view.is_building()),
                    timeout)
    if window.errors:
        raise RuntimeError(window.errors[0])
    if not ok:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for the cell to be classified")
    if require_model and ws.classifier is None:
        raise RuntimeError(window.model_label.toolTip() or "no model loaded")
    if select and ws.cell is not None:
        ws.select_next_least_confident()  # show the review state: the least confident chromosome selected
        wait_until(lambda: False, 0.3)  # let the views repaint
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out)):
        raise RuntimeError(f"could not write {out}")
    return out


# Qt's X11 (xcb) platform plugin loads these at start; without them Qt only says "no Qt platform
# plugin could be initialized" and aborts. library name -> Debian/Ubuntu package
XCB_LIBRARIES = {
    "xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4", "xcb-keysyms": "libxcb-keysyms1",
    "xcb-image": "libxcb-image0", "xcb-render-util": "libxcb-render-util0", "xcb-xkb": "libxcb-xkb1",
    "xkbcommon-x11": "libxkbcommon-x11-0", "xcb-shape": "libxcb-shape0", "xcb-randr": "libxcb-randr0",
    "EGL": "libegl1", "fontconfig": "libfontconfig1",
}


def missing_display_libraries(find=None) -> list[str]:
    """Debian packages that Qt's X11 plugin needs and that this machine lacks (only on Linux with X11)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM", "xcb") not in ("xcb", ""):
        return []
    if not os.environ.get("DISPLAY"):
        return []
    if find is None:
        from ctypes.util import find_library as find
    return [pkg for lib, pkg in XCB_LIBRARIES.items() if find(lib) is None]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    missing = missing_display_libraries()
    if missing:
        print("chromodesk-gui: the desktop app needs system libraries this machine lacks; install them with\n"
              f"  sudo apt-get install {' '.join(missing)}\n"
              "(headless use needs none of them: chromodesk analyze, or --screenshot)", file=sys.stderr)
        return 3
    from PySide6.QtWidgets import QApplication

    from .errors import install_excepthook, setup_logging
    from .main_window import MainWindow
    from .settings import Preferences

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("ChromoDesk")
    app.setOrganizationName("ChromoDesk")
    from .compat import binding_problem

    problem = binding_problem()
    if problem:
        print(f"chromodesk-gui: {problem}", file=sys.stderr)
        return 3
    try:
        log_file = setup_logging()
    except OSError:
        log_file = None
    prefs = Preferences(model=args.model, device=args.device)
    if args.screenshot:
        if not args.path:
            print("chromodesk-gui: --screenshot needs an IMAGE", file=sys.stderr)
            return 2
        window = MainWindow(prefs, headless=True, autosave=False)
        try:
            out = screenshot(window, args.path, args.screenshot, args.timeout)
        except Exception as exc:  # noqa: BLE001 - one line for the caller, details in the log
            log.exception("screenshot failed")
            print(f"chromodesk-gui: {exc}", file=sys.stderr)
            window.close()
            return 1
        window.close()
        print(out)
        return 0
    window = MainWindow(prefs)
    install_excepthook(lambda: window)
    small = False
    if not window.restore_layout():
        screen = app.primaryScreen().availableGeometry()  # a sensible first size: most of the screen
        small = screen.width() < 1280 or screen.height() < 800
        if small:  # a laptop or an old lab monitor: all of it
            window.setGeometry(screen)
        else:
            window.resize(min(1600, screen.width() * 9 // 10), min(1000, screen.height() * 9 // 10))
    window.showMaximized() if small else window.show()
    if log_file is not None:
        log.info("started; log file %s", log_file)
    if args.path:
        window.workspace.open_path(args.path)
    return app.exec()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
