"""The desktop bundle's smoke test: the PyInstaller one-folder app (built by `make bundle`, several
minutes and ~5 GB with the CUDA build of torch) opens a sample, classifies it and saves the
window. Skipped, saying so, where no bundle has been built."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dist" / "chromodesk" / "chromodesk"

pytestmark = pytest.mark.timeout(600)


@pytest.mark.skipif(not APP.is_file(), reason="no desktop bundle: `make bundle` builds dist/chromodesk/")
def test_the_bundled_app_classifies_a_sample_and_saves_its_window(tmp_path):
    shot = tmp_path / "bundle.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1", HOME=str(tmp_path))
    run = subprocess.run([str(APP), str(ROOT / "resources" / "samples" / "103201.jpg"), "--screenshot", str(shot)],
                         capture_output=True, text=True, timeout=500, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a real window, not an empty picture
    for name in ("chromodesk.desktop", "chromodesk.png"):
        assert (APP.parent / name).is_file()
