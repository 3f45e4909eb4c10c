"""``chromodesk analyze`` over a folder tree with worker processes: every image analysed once,
exports mirroring the tree, one summary, and a second run that skips what is up to date."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"

pytestmark = pytest.mark.timeout(600)


def analyze(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "chromodesk", "analyze", *map(str, args), "--device", "cpu"],
                          capture_output=True, text=True, timeout=500, env=env)


def test_a_folder_tree_with_two_workers_then_a_resumed_run(tmp_path):
    tree = tmp_path / "case17"
    for sub, stem in (("", "103201"), ("slide2", "1051362"), ("slide2/deeper", "1054073")):
        (tree / sub).mkdir(parents=True, exist_ok=True)
        for suffix in (".jpg", ".xml"):
            shutil.copy(SAMPLES / f"{stem}{suffix}", tree / sub / f"{stem}{suffix}")
    (tree / "slide2" / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"

    first = analyze(tree, "--out", out, "--workers", "2", "--formats", "csv,voc")
    assert first.returncode == 1, first.stderr  # one image failed, the others were analysed
    assert first.stdout.count("chromosomes (annotations)") == 3
    assert [line for line in first.stderr.splitlines() if line.startswith("chromodesk:")] == [
        f"chromodesk: {tree / 'slide2' / 'notes.jpg'}: not an image (unknown format; expected JPEG, PNG, TIFF or BMP)"]
    for rel in ("103201", "slide2/1051362", "slide2/deeper/1054073"):
        assert (out / "case17" / f"{rel}.csv").is_file() and (out / "case17" / f"{rel}.xml").is_file()
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    by_image = {Path(r["image"]).name: r for r in rows}
    assert len(rows) == 4 and by_image["notes.jpg"]["status"] == "failed"
    assert by_image["1054073.jpg"]["karyotype"] == "47,XYY" and by_image["1054073.jpg"]["chromosomes"] == "47"

    # the same command again: only the failed image is tried, the summary still lists all four
    (tree / "slide2" / "1051362.jpg").touch()  # a changed image is analysed again
    second = analyze(tree, "--out", out, "--workers", "2", "--formats", "csv,voc")
    assert second.returncode == 1
    assert second.stdout.count("chromosomes (annotations)") == 1 and "1051362.jpg" in second.stdout
    assert "2 image(s) skipped" in second.stderr
    again = {Path(r["image"]).name: r for r in csv.DictReader(io.StringIO((out / "summary.csv").read_text()))}
    assert again["1054073.jpg"] == by_image["1054073.jpg"] and len(again) == 4


def test_an_unusable_model_with_workers_is_one_line_before_any_image(tmp_path):
    tree = tmp_path / "cells"
    tree.mkdir()
    for stem in ("103201", "1051362"):
        for suffix in (".jpg", ".xml"):
            shutil.copy(SAMPLES / f"{stem}{suffix}", tree / f"{stem}{suffix}")
    (tmp_path / "broken.json").write_text('{"model_id": "x"}')
    run = analyze(tree, "--workers", "2", "--model", tmp_path / "broken.json")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [f"chromodesk: {tmp_path / 'broken.json'}: model metadata names no weights file"]
