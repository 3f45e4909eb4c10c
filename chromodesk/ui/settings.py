"""Preferences (reviewer name, device, model, recent files) kept in QSettings."""

from __future__ import annotations

import getpass
from pathlib import Path

from PySide6.QtCore import QSettings

DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_RECENT = 10


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "reviewer"


class Preferences:
    """Typed access to QSettings; tests pass their own (an INI file in a temporary folder)."""

    def __init__(self, settings: QSettings | None = None, *, model: str | None = None, device: str | None = None):
        self.qsettings = settings if settings is not None else QSettings("ChromoDesk", "ChromoDesk")
        # command-line choices for this run only (not written to the settings)
        self.model_override, self.device_override = model, device

    def _get(self, key: str, default: str = "") -> str:
        value = self.qsettings.value(key, default)
        return default if value is None else str(value)

    @property
    def reviewer(self) -> str:
        return self._get("reviewer") or _user()

    @reviewer.setter
    def reviewer(self, value: str) -> None:
        self.qsettings.setValue("reviewer", value.strip())

    @property
    def device(self) -> str:
        if self.device_override:
            return self.device_override
        value = self._get("device", "auto")
        return value if value in DEVICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        self.device_override = None
        self.qsettings.setValue("device", value)

    @property
    def model(self) -> str:
        """Model bundle path; empty means the bundled default (``models/chromodesk-resnet18.json``)."""
        return self.model_override or self._get("model")

    @model.setter
    def model(self, value: str) -> None:
        self.model_override = None
        self.qsettings.setValue("model", str(value or ""))

    @property
    def recent(self) -> list[str]:
        value = self.qsettings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        items = ([path] + [p for p in self.recent if p != path])[:MAX_RECENT]
        if items != self.recent:  # every write syncs the settings file (~15 ms of GUI time)
            self.qsettings.setValue("recent", items)

    def forget_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        if path in self.recent:
            self.qsettings.setValue("recent", [p for p in self.recent if p != path])

    def sync(self) -> None:
        self.qsettings.sync()
