"""Errors: a log file, and one dialog per error with the details folded away."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger("chromodesk")


def log_dir() -> Path:
    """``$CHROMODESK_LOG_DIR``, else ``$XDG_STATE_HOME/chromodesk``, else ``~/.local/state/chromodesk``."""
    if os.environ.get("CHROMODESK_LOG_DIR"):
        return Path(os.environ["CHROMODESK_LOG_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chromodesk"


def setup_logging(directory: Path | None = None) -> Path:
    directory = directory or log_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "chromodesk.log"
    root = logging.getLogger("chromodesk")
    if not any(isinstance(h, RotatingFileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def show_error(parent: QWidget | None, summary: str, details: str = "", title: str = "ChromoDesk") -> None:
    """Log the error and show it in one dialog; the traceback goes under "Show Details…"."""
    log.error("%s%s", summary, f"\n{details}" if details else "")
    box = QMessageBox(QMessageBox.Icon.Critical, title, summary, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.exec()


def install_excepthook(parent_getter) -> None:
    """An exception escaping a slot becomes a dialog, never a crash."""

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        try:
            show_error(parent_getter(), f"Unexpected error: {exc}", details)
        except Exception:  # noqa: BLE001 - the dialog itself failed: at least log it
            log.critical("unhandled error\n%s", details)

    sys.excepthook = hook
