"""A real install: the built wheel, in a fresh virtual environment, outside the checkout,
finds its model bundles and samples through importlib.resources and analyses a cell.

The fresh venv reuses this environment's already-installed dependencies through a .pth
line (torch is 2 GB: reinstalling it would take minutes), but not ChromoDesk itself: a
.pth-added folder is not scanned for the editable install's own .pth hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples" / "103201.jpg"

pytestmark = pytest.mark.timeout(900)


def run(*args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


def test_the_wheel_installs_into_a_fresh_venv_and_analyses_a_sample_elsewhere(tmp_path):
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q", "-w", dist,
                cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(dist.glob("chromodesk-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    for inside in ("chromodesk/models/chromodesk-resnet18.safetensors", "chromodesk/models/chromodesk-detector.json",
                   "chromodesk/samples/103201.jpg", "chromodesk/samples/103201.xml", "chromodesk/cli.py",
                   "chromodesk/web/index.html", "chromodesk/web/app.js"):
        assert inside in names, f"the wheel lacks {inside}"

    fresh = tmp_path / "fresh"
    assert run(sys.executable, "-m", "venv", "--without-pip", fresh, cwd=tmp_path).returncode == 0
    python = fresh / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    (site / "reuse-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]

    elsewhere = tmp_path / "lab"
    elsewhere.mkdir()
    shutil.copy(SAMPLE, elsewhere / SAMPLE.name)
    shutil.copy(SAMPLE.with_suffix(".xml"), elsewhere / f"{SAMPLE.stem}.xml")
    where = run(python, "-c", "import chromodesk.bundled as b; print(b.__file__); print(b.models_dir())", cwd=elsewhere)
    module_file, models = where.stdout.split()
    assert Path(module_file).is_relative_to(fresh) and Path(models).is_relative_to(fresh), where.stdout

    chromodesk = fresh / "bin" / "chromodesk"
    version = run(chromodesk, "--version", cwd=elsewhere)
    assert version.returncode == 0 and "classifier resnet18-" in version.stdout and "detector centernet-" in version.stdout
    result = run(chromodesk, "analyze", SAMPLE.name, "--json", "--device", "cpu", cwd=elsewhere,
                 env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout.splitlines()[-1])
    assert payload["count"] == 46 and payload["model_id"].startswith("resnet18-")
