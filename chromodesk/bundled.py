"""The files that ship inside ChromoDesk: the model bundles and the sample cells.

In the checkout they live at the top level (``models/``, ``resources/samples/``); the
pyproject maps them into the package as ``chromodesk.models`` and ``chromodesk.samples``, so
a wheel or ``pip install .`` carries them and ``importlib.resources`` finds them wherever
the package is installed, with no path relative to a repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def _folder(package: str, fallback: Path) -> Path:
    try:
        found = Path(str(resources.files(package)))
    except (ModuleNotFoundError, TypeError):  # run from a checkout that was never installed
        return fallback
    return found if found.is_dir() else fallback


def models_dir() -> Path:
    return _folder("chromodesk.models", _CHECKOUT / "models")


def samples_dir() -> Path:
    return _folder("chromodesk.samples", _CHECKOUT / "resources" / "samples")
