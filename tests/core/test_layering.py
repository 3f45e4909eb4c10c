"""The architecture, enforced: core imports neither Qt nor torch; inference imports no Qt."""

import subprocess
import sys

CHECK = """
import sys, importlib, pkgutil
import {package} as pkg
for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    importlib.import_module(m.name)
bad = sorted(n for n in sys.modules if n.split(".")[0] in {forbidden})
print(",".join(bad))
"""


def _imports(package: str, forbidden: set[str]) -> str:
    code = CHECK.format(package=package, forbidden=forbidden)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_core_imports_neither_qt_nor_torch():
    assert _imports("chromodesk.core", {"PySide6", "pyqtgraph", "torch", "torchvision", "superqt"}) == ""


def test_inference_imports_no_qt():
    assert _imports("chromodesk.inference", {"PySide6", "pyqtgraph", "superqt"}) == ""


def test_pipeline_does_not_load_torch_until_classifying():
    code = "import sys, chromodesk.pipeline; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
